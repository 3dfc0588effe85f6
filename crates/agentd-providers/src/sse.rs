//! Incremental Server-Sent Events parser and encoder.
//!
//! Follows the WHATWG event-stream rules because upstreams differ in the details: some send
//! CRLF, some omit the space after the colon, some send comments as keep-alives. Bytes may be
//! split anywhere by the network, so lines are only decoded once complete (a chunk boundary
//! inside a UTF-8 character or between `\r` and `\n` must not change the result).

use bytes::Bytes;

/// One dispatched SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `None` when the event did not name itself (the spec's "message").
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental parser: feed it bytes as they arrive, collect the events they complete.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` at the start of the next one belongs to it.
    after_cr: bool,
    /// Whether the byte-order mark check has been done (only the very first bytes may hold one).
    bom_checked: bool,
    /// Data lines of the event being built, each followed by `\n`.
    data: String,
    /// The `event:` field of the event being built (empty = unnamed).
    event: String,
    /// A field line was seen for the event being built (for `has_partial`).
    fields_seen: bool,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; returns the events completed by them.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if !self.bom_checked {
            // The BOM may itself arrive split, so wait until three bytes are known.
            let have = self.line.len() + rest.len();
            let mut head = self.line.clone();
            head.extend_from_slice(&rest[..rest.len().min(BOM.len())]);
            if have < BOM.len() && BOM.starts_with(&head) {
                self.line.extend_from_slice(rest);
                return events;
            }
            self.bom_checked = true;
            if head.starts_with(BOM) {
                let consumed_from_rest = BOM.len() - self.line.len();
                self.line.clear();
                rest = &rest[consumed_from_rest..];
            }
        }
        for &b in rest {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(&mut events),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut events);
                }
                _ => self.line.push(b),
            }
        }
        events
    }

    /// True when bytes of an incomplete event are buffered (used to detect a stream cut midway).
    pub fn has_partial(&self) -> bool {
        // The first bytes of a byte-order mark are not an event yet.
        let bom_prefix = !self.bom_checked && BOM.starts_with(&self.line);
        let line_pending = !self.line.is_empty() && !bom_prefix;
        line_pending || self.fields_seen
    }

    fn end_line(&mut self, events: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        if line[0] == b':' {
            return; // comment, used as keep-alive
        }
        let line = String::from_utf8_lossy(&line);
        let (name, value) = match line.find(':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (&line[..], ""),
        };
        self.fields_seen = true;
        match name {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            // `id` and `retry` only matter for reconnecting EventSource clients; we never
            // resume an LLM stream, and unknown fields must be ignored.
            _ => {}
        }
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        self.fields_seen = false;
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the `\n` after the last data line
        events.push(SseEvent {
            event: (!event.is_empty()).then_some(event),
            data,
        });
    }
}

/// Encode one SSE frame: `event: NAME\n` (if any) + `data: DATA\n\n`.
///
/// Multi-line data gets one `data:` line per line, so the receiving parser rebuilds it exactly.
pub fn frame(event: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(event) = event {
        out.push_str("event: ");
        out.push_str(event);
        out.push('\n');
    }
    for line in split_lines(data) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// Split on CRLF, LF or CR, the way an SSE parser will read them back.
fn split_lines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&s[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&s[start..i]);
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    lines.push(&s[start..]);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    fn parse_all(input: &[u8]) -> Vec<SseEvent> {
        SseParser::new().push(input)
    }

    #[test]
    fn parses_fields_the_whatwg_way() {
        let input = b"event: message_start\ndata: {\"a\":1}\n\n: keep-alive\n\ndata:no-space\ndata:  two spaces\n\nevent:x\ndata\n\nid: 7\nretry: 10\n\n";
        assert_eq!(
            parse_all(input),
            vec![
                ev(Some("message_start"), "{\"a\":1}"),
                ev(None, "no-space\n two spaces"),
                ev(Some("x"), ""),
            ]
        );
    }

    #[test]
    fn accepts_crlf_cr_and_lf_line_endings() {
        let input = b"data: a\r\n\r\ndata: b\r\rdata: c\n\nevent: e\r\ndata: d\r\ndata: e\r\n\r\n";
        assert_eq!(
            parse_all(input),
            vec![
                ev(None, "a"),
                ev(None, "b"),
                ev(None, "c"),
                ev(Some("e"), "d\ne")
            ]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let input = "\u{FEFF}event: content_block_delta\r\ndata: {\"text\":\"h\u{e9}llo \u{1F600}\"}\r\n\r\n: ping\r\rdata: x\rdata: y\r\rdata: [DONE]\n\n"
            .as_bytes();
        let whole = parse_all(input);
        assert_eq!(
            whole,
            vec![
                ev(
                    Some("content_block_delta"),
                    "{\"text\":\"h\u{e9}llo \u{1F600}\"}"
                ),
                ev(None, "x\ny"),
                ev(None, "[DONE]"),
            ]
        );
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let mut p = SseParser::new();
                let mut got = p.push(&input[..i]);
                got.extend(p.push(&input[i..j]));
                got.extend(p.push(&input[j..]));
                assert_eq!(got, whole, "split at {i} and {j}");
                assert!(!p.has_partial());
            }
        }
        // One byte at a time.
        let mut p = SseParser::new();
        let got: Vec<_> = input.iter().flat_map(|b| p.push(&[*b])).collect();
        assert_eq!(got, whole);
    }

    #[test]
    fn byte_order_mark_is_only_skipped_at_the_start() {
        assert_eq!(parse_all(b"\xEF\xBB\xBFdata: a\n\n"), vec![ev(None, "a")]);
        let mut p = SseParser::new();
        assert!(p.push(b"\xEF").is_empty());
        assert!(!p.has_partial());
        assert!(p.push(b"\xBB\xBF").is_empty());
        assert_eq!(p.push(b"data: b\n\n"), vec![ev(None, "b")]);
        // A BOM later on is part of the field name, making it an unknown field.
        assert_eq!(
            parse_all(b"data: a\n\n\xEF\xBB\xBFdata: b\n\n"),
            vec![ev(None, "a")]
        );
    }

    #[test]
    fn has_partial_reports_an_unfinished_event() {
        let mut p = SseParser::new();
        assert!(!p.has_partial());
        assert!(p.push(b"event: message_delta\n").is_empty());
        assert!(p.has_partial());
        assert!(p.push(b"data: {\"x\"").is_empty());
        assert!(p.has_partial());
        assert_eq!(
            p.push(b":1}\n\n"),
            vec![ev(Some("message_delta"), "{\"x\":1}")]
        );
        assert!(!p.has_partial());
        assert!(p.push(b": comment\n").is_empty());
        assert!(!p.has_partial());
        // A CR whose LF has not arrived yet is not a partial event.
        assert_eq!(p.push(b"data: y\r\n\r"), vec![ev(None, "y")]);
        assert!(!p.has_partial());
        assert!(p.push(b"\n").is_empty());
    }

    #[test]
    fn event_without_data_is_not_dispatched_and_does_not_leak_its_name() {
        assert_eq!(
            parse_all(b"event: ping\n\ndata: x\n\n"),
            vec![ev(None, "x")]
        );
    }

    #[test]
    fn frame_round_trips_through_the_parser() {
        assert_eq!(&frame(Some("ping"), "{}")[..], b"event: ping\ndata: {}\n\n");
        assert_eq!(&frame(None, "[DONE]")[..], b"data: [DONE]\n\n");
        for data in ["", "a\nb", "a\r\nb\rc", "trailing\n", " lead"] {
            let f = frame(Some("e"), data);
            let expected = data.replace("\r\n", "\n").replace('\r', "\n");
            assert_eq!(parse_all(&f), vec![ev(Some("e"), &expected)], "{data:?}");
        }
    }
}
