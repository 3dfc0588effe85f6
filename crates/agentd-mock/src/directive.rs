//! Per-request directives: `mock:NAME=VALUE` words in the last user message and the `x-mock`
//! header.
//!
//! Directives travel inside the prompt so that they survive a gateway that forwards only the
//! body; the header exists for callers that cannot (or do not want to) touch the prompt, and
//! wins over the message when both name the same directive.

use std::time::Duration;

use http::StatusCode;

/// The prefix that marks a directive word inside message text.
pub(crate) const PREFIX: &str = "mock:";

/// Behaviour requested for one request. `None` / `false` = not requested.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Directives {
    pub status: Option<StatusCode>,
    pub retry_after: Option<Duration>,
    pub latency: Option<Duration>,
    pub ttft: Option<Duration>,
    pub token_delay: Option<Duration>,
    pub tokens: Option<usize>,
    pub reset: bool,
    pub cut_after: Option<usize>,
    pub malformed: bool,
    pub tool: Option<String>,
    pub echo: bool,
    /// Answer without any usage, like servers that do not report it.
    pub no_usage: bool,
}

/// A directive the mock recognises but whose value it cannot use. Unknown directive names are
/// ignored instead (so newer tests keep working against an older mock), but a known name with a
/// bad value is a test bug worth a loud 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DirectiveError {
    #[error("mock directive `{name}` needs a value, e.g. `mock:{name}=1`")]
    MissingValue { name: String },
    #[error("mock directive `{name}={value}` is invalid: expected {expected}")]
    BadValue {
        name: String,
        value: String,
        expected: &'static str,
    },
}

impl Directives {
    /// Directives found in message text: only words starting with `mock:` count. Surrounding
    /// punctuation is tolerated so that "please answer (mock:tokens=5)." works.
    pub(crate) fn from_message(text: &str) -> Result<Self, DirectiveError> {
        let mut directives = Self::default();
        for word in text.split_whitespace() {
            if let Some(body) = directive_body(word) {
                directives.apply(body)?;
            }
        }
        Ok(directives)
    }

    /// Applies the space-separated directives of an `x-mock` header on top of `self` (the header
    /// wins). The `mock:` prefix is optional there.
    pub(crate) fn overlay_header(&mut self, header: &str) -> Result<(), DirectiveError> {
        for word in header.split_whitespace() {
            self.apply(word.strip_prefix(PREFIX).unwrap_or(word))?;
        }
        Ok(())
    }

    fn apply(&mut self, word: &str) -> Result<(), DirectiveError> {
        let (name, value) = match word.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (word, None),
        };
        match name {
            "status" => {
                let code = int(name, value, "an HTTP error status (400-599)")?;
                self.status = Some(
                    u16::try_from(code)
                        .ok()
                        .filter(|code| (400..=599).contains(code))
                        .and_then(|code| StatusCode::from_u16(code).ok())
                        .ok_or_else(|| bad(name, value, "an HTTP error status (400-599)"))?,
                );
            }
            "retry_after" => {
                self.retry_after = Some(Duration::from_secs(int(name, value, "whole seconds")?));
            }
            "latency_ms" => self.latency = Some(millis(name, value)?),
            "ttft_ms" => self.ttft = Some(millis(name, value)?),
            "token_delay_ms" => self.token_delay = Some(millis(name, value)?),
            "tokens" => self.tokens = Some(count(name, value)?),
            "cut_after" => self.cut_after = Some(count(name, value)?),
            "reset" => self.reset = flag(name, value)?,
            "malformed" => self.malformed = flag(name, value)?,
            "echo" => self.echo = flag(name, value)?,
            "no_usage" => self.no_usage = flag(name, value)?,
            "tool" => match value {
                Some(tool) if !tool.is_empty() => self.tool = Some(tool.to_owned()),
                Some(_) | None => {
                    return Err(DirectiveError::MissingValue {
                        name: name.to_owned(),
                    })
                }
            },
            // Unknown names are ignored on purpose, see `DirectiveError`.
            _ => {}
        }
        Ok(())
    }
}

/// `word` without its `mock:` prefix and surrounding punctuation, if it is a directive.
fn directive_body(word: &str) -> Option<&str> {
    let word = word.trim_start_matches(['(', '[', '"', '\'', '`']);
    let body = word.strip_prefix(PREFIX)?;
    let body = body.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '"', '\'', '`']);
    (!body.is_empty()).then_some(body)
}

/// True if `word` (as it appears in message text) is a directive; such words are left out of
/// the "Mock reply to: …" prefix.
pub(crate) fn is_directive_word(word: &str) -> bool {
    directive_body(word).is_some()
}

fn bad(name: &str, value: Option<&str>, expected: &'static str) -> DirectiveError {
    DirectiveError::BadValue {
        name: name.to_owned(),
        value: value.unwrap_or_default().to_owned(),
        expected,
    }
}

fn int(name: &str, value: Option<&str>, expected: &'static str) -> Result<u64, DirectiveError> {
    let value = value.ok_or_else(|| DirectiveError::MissingValue {
        name: name.to_owned(),
    })?;
    value.parse().map_err(|_| bad(name, Some(value), expected))
}

fn millis(name: &str, value: Option<&str>) -> Result<Duration, DirectiveError> {
    int(name, value, "whole milliseconds").map(Duration::from_millis)
}

fn count(name: &str, value: Option<&str>) -> Result<usize, DirectiveError> {
    let n = int(name, value, "a non-negative integer")?;
    usize::try_from(n).map_err(|_| bad(name, value, "a non-negative integer"))
}

fn flag(name: &str, value: Option<&str>) -> Result<bool, DirectiveError> {
    match value {
        None | Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(_) => Err(bad(name, value, "nothing, or true/false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_words_need_the_prefix_and_tolerate_punctuation() {
        let d = Directives::from_message(
            "Hello status=500 (mock:tokens=5), then mock:echo. and \"mock:tool=get_weather\"",
        )
        .unwrap();
        assert_eq!(d.status, None);
        assert_eq!(d.tokens, Some(5));
        assert!(d.echo);
        assert_eq!(d.tool.as_deref(), Some("get_weather"));
    }

    #[test]
    fn header_overrides_message_and_prefix_is_optional() {
        let mut d = Directives::from_message("mock:status=500 mock:latency_ms=10").unwrap();
        d.overlay_header("status=429 mock:retry_after=3").unwrap();
        assert_eq!(d.status, Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(d.retry_after, Some(Duration::from_secs(3)));
        assert_eq!(d.latency, Some(Duration::from_millis(10)));
    }

    #[test]
    fn every_directive_parses() {
        let mut d = Directives::default();
        d.overlay_header(
            "status=503 retry_after=2 latency_ms=1 ttft_ms=2 token_delay_ms=3 tokens=4 reset \
             cut_after=5 malformed tool=t echo no_usage",
        )
        .unwrap();
        assert_eq!(
            d,
            Directives {
                status: Some(StatusCode::SERVICE_UNAVAILABLE),
                retry_after: Some(Duration::from_secs(2)),
                latency: Some(Duration::from_millis(1)),
                ttft: Some(Duration::from_millis(2)),
                token_delay: Some(Duration::from_millis(3)),
                tokens: Some(4),
                reset: true,
                cut_after: Some(5),
                malformed: true,
                tool: Some("t".into()),
                echo: true,
                no_usage: true,
            }
        );
        d.overlay_header("reset=false").unwrap();
        assert!(!d.reset);
    }

    #[test]
    fn bad_values_are_errors_and_unknown_names_are_ignored() {
        let mut d = Directives::default();
        assert_eq!(
            d.overlay_header("tokens=lots").unwrap_err().to_string(),
            "mock directive `tokens=lots` is invalid: expected a non-negative integer"
        );
        assert!(matches!(
            d.overlay_header("status=200"),
            Err(DirectiveError::BadValue { .. })
        ));
        assert!(matches!(
            d.overlay_header("latency_ms"),
            Err(DirectiveError::MissingValue { .. })
        ));
        assert!(matches!(
            d.overlay_header("tool="),
            Err(DirectiveError::MissingValue { .. })
        ));
        let mut d = Directives::default();
        d.overlay_header("frobnicate=3 future_thing").unwrap();
        assert_eq!(d, Directives::default());
        assert!(is_directive_word("mock:echo"));
        assert!(!is_directive_word("mock:"));
        assert!(!is_directive_word("mockery"));
    }
}
