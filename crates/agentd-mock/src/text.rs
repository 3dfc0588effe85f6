//! API-independent content: what the mock "reads" from a conversation and what it answers.
//!
//! Both wire formats are first lowered to a [`Conversation`] and answered by [`respond`], so the
//! same prompt gets the same reply text and the same token counts through either API (the
//! gateway's translation tests rely on that).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::directive::{is_directive_word, Directives};
use crate::MockOptions;

/// How many words of the last user message the reply quotes.
const QUOTED_USER_WORDS: usize = 8;
/// How many words of a tool result the follow-up reply quotes.
const QUOTED_TOOL_WORDS: usize = 12;
/// Characters per prompt token, the usual rule of thumb for English text.
const CHARS_PER_TOKEN: usize = 4;
/// Fixed per-message overhead, like the chat templates real tokenizers add.
const TOKENS_PER_MESSAGE: u64 = 3;

/// Filler vocabulary. Changing it changes every golden reply, so only append.
const VOCABULARY: [&str; 64] = [
    "the", "model", "answers", "quietly", "with", "several", "useful", "notes", "about", "data",
    "systems", "agents", "tokens", "streams", "latency", "gateway", "request", "reply", "simple",
    "clear", "fast", "mock", "output", "value", "signal", "network", "server", "client", "budget",
    "queue", "worker", "region", "cache", "stable", "random", "steady", "bright", "calm", "green",
    "river", "stone", "cloud", "paper", "light", "north", "south", "quick", "small", "large",
    "early", "later", "often", "never", "always", "every", "other", "first", "final", "ready",
    "again", "inside", "around", "before", "after",
];

/// How the conversation ends, which decides the kind of answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// The last message is a user message with text: answer it (or call a tool).
    User,
    /// The last message carries tool results (their text, joined): summarise them.
    ToolResult(String),
    /// The last message is the assistant's own (a prefill): continue with text.
    Assistant,
}

/// A conversation lowered from either API.
#[derive(Debug, Clone)]
pub(crate) struct Conversation {
    seed: Sha256,
    chars: usize,
    messages: u64,
    /// Text of the last user message that has text of its own (not only tool results).
    pub last_user_text: String,
    pub tail: Tail,
}

impl Default for Conversation {
    fn default() -> Self {
        Self {
            seed: Sha256::new(),
            chars: 0,
            messages: 0,
            last_user_text: String::new(),
            tail: Tail::Assistant,
        }
    }
}

impl Conversation {
    /// Counts one message (system prompts count as one too).
    pub(crate) fn message(&mut self) {
        self.messages += 1;
    }

    /// Feeds text the model reads: it counts towards prompt tokens and seeds the reply.
    pub(crate) fn read(&mut self, text: &str) {
        self.chars += text.chars().count();
        self.seed.update(text.as_bytes());
        self.seed.update([0]);
    }

    /// Feeds text that only counts towards prompt tokens (tool definitions): adding a tool to
    /// a request must not change an unrelated text reply.
    pub(crate) fn count_only(&mut self, text: &str) {
        self.chars += text.chars().count();
    }

    pub(crate) fn prompt_tokens(&self) -> u64 {
        self.chars.div_ceil(CHARS_PER_TOKEN) as u64 + TOKENS_PER_MESSAGE * self.messages
    }

    fn rng(&self) -> Rng {
        Rng::from_digest(&self.seed.clone().finalize())
    }
}

/// A tool the model may call, reduced to what the mock needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolSpec {
    pub name: String,
    pub schema: Value,
}

/// Feeds a tool definition into the prompt-token count the same way for both APIs.
pub(crate) fn count_tool(conv: &mut Conversation, name: &str, description: &str, schema: &Value) {
    conv.count_only(name);
    conv.count_only(description);
    conv.count_only(&schema.to_string());
}

/// The request's `tool_choice`, in both APIs' vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToolChoice {
    None,
    Auto,
    /// OpenAI `required`, Anthropic `any`.
    Required,
    Named(String),
}

/// Limits on a text reply.
#[derive(Debug, Clone, Default)]
pub(crate) struct Limits {
    pub max_tokens: Option<u64>,
    pub stop: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finish {
    Stop,
    Length,
    StopSequence(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    pub name: String,
    pub input: Value,
    /// `input` serialised, as OpenAI's `arguments` and Anthropic's `partial_json` carry it.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// Text as stream tokens (each a word with its leading whitespace); joined = the content.
    Text {
        tokens: Vec<String>,
        finish: Finish,
    },
    ToolCall(ToolCall),
}

impl Reply {
    pub(crate) fn output_tokens(&self) -> u64 {
        match self {
            Reply::Text { tokens, .. } => tokens.len() as u64,
            Reply::ToolCall(call) => {
                let chars = call.name.chars().count() + call.arguments.chars().count();
                chars.div_ceil(CHARS_PER_TOKEN) as u64
            }
        }
    }
}

/// Decides the answer to a conversation. Pure: the same inputs give the same reply.
pub(crate) fn respond(
    conv: &Conversation,
    tools: &[ToolSpec],
    choice: &ToolChoice,
    limits: &Limits,
    directives: &Directives,
    opts: &MockOptions,
) -> Reply {
    let length = directives.tokens.unwrap_or(opts.default_tokens);
    match &conv.tail {
        Tail::ToolResult(result) => {
            let quoted = quote(result, QUOTED_TOOL_WORDS);
            let prefix = format!("Mock reply to tool result: {quoted}");
            text_reply(generate(&prefix, conv, length), limits)
        }
        Tail::User => {
            let forced = directives.tool.as_deref();
            let chosen = match (forced, choice) {
                (Some(name), _) => Some(name),
                (None, _) if tools.is_empty() => None,
                (None, ToolChoice::None) => None,
                (None, ToolChoice::Named(name)) => Some(name.as_str()),
                (None, ToolChoice::Auto | ToolChoice::Required) => {
                    tools.first().map(|tool| tool.name.as_str())
                }
            };
            match chosen {
                Some(name) => Reply::ToolCall(tool_call(name, tools)),
                None if directives.echo => text_reply(split_tokens(&conv.last_user_text), limits),
                None => text_reply(user_reply(conv, length), limits),
            }
        }
        Tail::Assistant if directives.echo => {
            text_reply(split_tokens(&conv.last_user_text), limits)
        }
        Tail::Assistant => text_reply(user_reply(conv, length), limits),
    }
}

fn user_reply(conv: &Conversation, length: usize) -> Vec<String> {
    let words: Vec<&str> = conv
        .last_user_text
        .split_whitespace()
        .filter(|word| !is_directive_word(word))
        .collect();
    let prefix = if words.is_empty() {
        "Mock reply.".to_owned()
    } else {
        format!(
            "Mock reply to: {}",
            quote(&words.join(" "), QUOTED_USER_WORDS)
        )
    };
    generate(&prefix, conv, length)
}

/// The first `max_words` words of `text`, ending with a full stop.
fn quote(text: &str, max_words: usize) -> String {
    let mut quoted = text
        .split_whitespace()
        .take(max_words)
        .collect::<Vec<_>>()
        .join(" ");
    if !quoted.ends_with('.') {
        quoted.push('.');
    }
    quoted
}

/// `prefix` followed by filler words picked from the conversation's hash, exactly `length`
/// tokens long (the prefix itself is cut if it is longer).
fn generate(prefix: &str, conv: &Conversation, length: usize) -> Vec<String> {
    let mut words: Vec<String> = prefix.split_whitespace().map(str::to_owned).collect();
    words.truncate(length);
    let prefix_len = words.len();
    let mut rng = conv.rng();
    while words.len() < length {
        words.push(VOCABULARY[(rng.next_u64() % VOCABULARY.len() as u64) as usize].to_owned());
    }
    if words.len() > prefix_len {
        if let Some(last) = words.last_mut() {
            last.push('.');
        }
    }
    words
        .into_iter()
        .enumerate()
        .map(|(i, word)| if i == 0 { word } else { format!(" {word}") })
        .collect()
}

/// Applies `max_tokens` and stop sequences, the way a model stops: whichever comes first.
fn text_reply(mut tokens: Vec<String>, limits: &Limits) -> Reply {
    let wanted = tokens.len();
    if let Some(max) = limits.max_tokens {
        tokens.truncate(usize::try_from(max).unwrap_or(usize::MAX));
    }
    let truncated = tokens.len() < wanted;
    let text: String = tokens.concat();
    let first_stop = limits
        .stop
        .iter()
        .filter(|stop| !stop.is_empty())
        .filter_map(|stop| text.find(stop.as_str()).map(|at| (at, stop)))
        .min_by_key(|(at, _)| *at);
    if let Some((at, stop)) = first_stop {
        let mut kept = Vec::new();
        let mut offset = 0;
        for token in tokens {
            if offset + token.len() <= at {
                offset += token.len();
                kept.push(token);
            } else {
                let partial = &token[..at - offset];
                if !partial.is_empty() {
                    kept.push(partial.to_owned());
                }
                break;
            }
        }
        return Reply::Text {
            tokens: kept,
            finish: Finish::StopSequence(stop.clone()),
        };
    }
    let finish = if truncated {
        Finish::Length
    } else {
        Finish::Stop
    };
    Reply::Text { tokens, finish }
}

/// Splits text into stream tokens: each is a run of whitespace followed by a word, so that
/// concatenating the tokens gives the text back byte for byte.
pub(crate) fn split_tokens(text: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    for ch in text.chars() {
        if ch.is_whitespace() && in_word {
            tokens.push(std::mem::take(&mut current));
            in_word = false;
        } else if !ch.is_whitespace() {
            in_word = true;
        }
        current.push(ch);
    }
    if !current.is_empty() {
        // Trailing whitespace belongs to the last word rather than being a token of its own.
        match tokens.last_mut() {
            Some(last) if !in_word => last.push_str(&current),
            Some(_) | None => tokens.push(current),
        }
    }
    tokens
}

fn tool_call(name: &str, tools: &[ToolSpec]) -> ToolCall {
    let input = tools
        .iter()
        .find(|tool| tool.name == name)
        .map(|tool| arguments_for(&tool.schema))
        .unwrap_or_else(|| Value::Object(Map::new()));
    ToolCall {
        name: name.to_owned(),
        arguments: input.to_string(),
        input,
    }
}

/// Arguments satisfying a JSON schema's `required` properties with the simplest valid values.
pub(crate) fn arguments_for(schema: &Value) -> Value {
    let mut args = Map::new();
    let properties = schema.get("properties").and_then(Value::as_object);
    let required = schema.get("required").and_then(Value::as_array);
    for name in required.into_iter().flatten().filter_map(Value::as_str) {
        let property = properties.and_then(|p| p.get(name));
        args.insert(name.to_owned(), sample_value(property));
    }
    Value::Object(args)
}

fn sample_value(schema: Option<&Value>) -> Value {
    let Some(schema) = schema else {
        return Value::String("mock".into());
    };
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|values| values.first())
    {
        return first.clone();
    }
    // `type` may be a list such as ["string", "null"]: use the first non-null one.
    let ty = match schema.get("type") {
        Some(Value::String(ty)) => ty.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|ty| *ty != "null")
            .unwrap_or("null"),
        _ => "string",
    };
    match ty {
        "number" | "integer" => Value::from(1),
        "boolean" => Value::Bool(true),
        "object" => Value::Object(Map::new()),
        "array" => Value::Array(Vec::new()),
        "null" => Value::Null,
        _ => Value::String("mock".into()),
    }
}

/// Fragments of a tool call's JSON arguments, as a model would stream them.
pub(crate) fn argument_fragments(arguments: &str) -> Vec<String> {
    const FRAGMENT_CHARS: usize = 8;
    let chars: Vec<char> = arguments.chars().collect();
    chars
        .chunks(FRAGMENT_CHARS)
        .map(|chunk| chunk.iter().collect())
        .collect()
}

/// A deterministic unit-length embedding of `input` (any stable byte representation of it).
pub(crate) fn embedding(input: &[u8], dims: usize) -> Vec<f32> {
    let mut rng = Rng::from_digest(&Sha256::digest(input));
    let raw: Vec<f64> = (0..dims)
        .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 {
        let mut unit = vec![0.0; dims];
        if let Some(first) = unit.first_mut() {
            *first = 1.0;
        }
        return unit;
    }
    raw.iter().map(|x| (x / norm) as f32).collect()
}

/// Prompt tokens of an embedding input string, by the same rule as chat prompts.
pub(crate) fn text_tokens(text: &str) -> u64 {
    (text.chars().count().div_ceil(CHARS_PER_TOKEN) as u64).max(1)
}

/// A fresh identifier with `prefix`, unique like the real APIs' ids (content is deterministic,
/// ids are not: a gateway may store responses by id).
pub(crate) fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = uuid::Uuid::new_v4().as_u128();
    let mut id = String::with_capacity(prefix.len() + 22);
    id.push_str(prefix);
    for _ in 0..22 {
        id.push(ALPHABET[(n % 62) as usize] as char);
        n /= 62;
    }
    id
}

/// Seconds since the Unix epoch, for `created` fields.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// SplitMix64: tiny, fast and stable across versions, unlike `rand`'s generators, so golden
/// replies never change under a dependency bump.
struct Rng(u64);

impl Rng {
    fn from_digest(digest: &[u8]) -> Self {
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&digest[..8]);
        Self(u64::from_le_bytes(seed))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn conversation(user: &str) -> Conversation {
        let mut conv = Conversation::default();
        conv.message();
        conv.read(user);
        conv.last_user_text = user.to_owned();
        conv.tail = Tail::User;
        conv
    }

    fn text_of(reply: &Reply) -> (String, Finish) {
        match reply {
            Reply::Text { tokens, finish } => (tokens.concat(), finish.clone()),
            Reply::ToolCall(call) => panic!("expected text, got tool call {call:?}"),
        }
    }

    fn answer(conv: &Conversation, limits: &Limits, d: &Directives) -> Reply {
        respond(
            conv,
            &[],
            &ToolChoice::Auto,
            limits,
            d,
            &MockOptions::default(),
        )
    }

    #[test]
    fn tokens_round_trip_the_text() {
        let text = "  Hello,  world\nhow are\tyou?  ";
        let tokens = split_tokens(text);
        assert_eq!(tokens.concat(), text);
        assert_eq!(tokens, ["  Hello,", "  world", "\nhow", " are", "\tyou?  "]);
        assert!(split_tokens("").is_empty());
    }

    #[test]
    fn reply_quotes_the_user_and_has_the_default_length() {
        let conv = conversation("What is the capital of France? mock:latency_ms=5");
        let reply = answer(&conv, &Limits::default(), &Directives::default());
        let (text, finish) = text_of(&reply);
        assert!(
            text.starts_with("Mock reply to: What is the capital of France?"),
            "{text}"
        );
        assert!(!text.contains("mock:"));
        assert!(text.ends_with('.'));
        assert_eq!(reply.output_tokens(), 20);
        assert_eq!(finish, Finish::Stop);
        // Deterministic, and depends on the prompt.
        assert_eq!(
            reply,
            answer(&conv, &Limits::default(), &Directives::default())
        );
        let other = answer(
            &conversation("Something else entirely"),
            &Limits::default(),
            &Directives::default(),
        );
        assert_ne!(text_of(&other).0[30..], text[30..]);
    }

    #[test]
    fn max_tokens_truncates_with_length_and_stop_sequences_win_when_earlier() {
        let conv = conversation("one two three");
        let limits = Limits {
            max_tokens: Some(4),
            stop: vec![],
        };
        let reply = answer(&conv, &limits, &Directives::default());
        assert_eq!(
            text_of(&reply),
            ("Mock reply to: one".into(), Finish::Length)
        );
        let limits = Limits {
            max_tokens: Some(10),
            stop: vec!["zzz".into(), "two".into(), "".into()],
        };
        let reply = answer(&conv, &limits, &Directives::default());
        assert_eq!(
            text_of(&reply),
            (
                "Mock reply to: one ".into(),
                Finish::StopSequence("two".into())
            )
        );
        assert_eq!(reply.output_tokens(), 5);
    }

    #[test]
    fn tokens_directive_and_echo() {
        let conv = conversation("say it back mock:echo");
        let d = Directives {
            tokens: Some(3),
            ..Directives::default()
        };
        assert_eq!(
            text_of(&answer(&conv, &Limits::default(), &d)).0,
            "Mock reply to:"
        );
        let d = Directives {
            tokens: Some(0),
            ..Directives::default()
        };
        assert_eq!(text_of(&answer(&conv, &Limits::default(), &d)).0, "");
        let d = Directives {
            echo: true,
            ..Directives::default()
        };
        assert_eq!(
            text_of(&answer(&conv, &Limits::default(), &d)),
            ("say it back mock:echo".into(), Finish::Stop)
        );
    }

    #[test]
    fn tool_selection() {
        let conv = conversation("weather?");
        let tools = vec![
            ToolSpec {
                name: "first".into(),
                schema: json!({}),
            },
            ToolSpec {
                name: "get_weather".into(),
                schema: json!({
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "days": {"type": "integer"},
                        "metric": {"type": "boolean"},
                        "unit": {"type": "string", "enum": ["c", "f"]},
                        "filters": {"type": "object"},
                        "tags": {"type": "array"},
                        "note": {"type": ["null", "string"]},
                        "optional": {"type": "string"}
                    },
                    "required": ["city", "days", "metric", "unit", "filters", "tags", "note"]
                }),
            },
        ];
        let opts = MockOptions::default();
        let d = Directives::default();
        let limits = Limits::default();
        let call =
            |choice: ToolChoice, d: &Directives| respond(&conv, &tools, &choice, &limits, d, &opts);
        let Reply::ToolCall(named) = call(ToolChoice::Named("get_weather".into()), &d) else {
            panic!("expected a tool call")
        };
        assert_eq!(
            named.input,
            json!({"city": "mock", "days": 1, "metric": true, "unit": "c", "filters": {},
                   "tags": [], "note": "mock"})
        );
        assert_eq!(
            serde_json::from_str::<Value>(&named.arguments).unwrap(),
            named.input
        );
        let Reply::ToolCall(auto) = call(ToolChoice::Auto, &d) else {
            panic!("expected a tool call")
        };
        assert_eq!((auto.name.as_str(), &auto.input), ("first", &json!({})));
        assert!(matches!(call(ToolChoice::None, &d), Reply::Text { .. }));
        let forced = Directives {
            tool: Some("get_weather".into()),
            ..Directives::default()
        };
        let Reply::ToolCall(forced) = call(ToolChoice::None, &forced) else {
            panic!("expected a tool call")
        };
        assert_eq!(forced.name, "get_weather");
        assert_eq!(
            argument_fragments(&forced.arguments).concat(),
            forced.arguments
        );
    }

    #[test]
    fn tool_results_are_quoted_not_called_again() {
        let mut conv = conversation("weather?");
        conv.tail = Tail::ToolResult("It is 21 degrees and sunny in Paris".into());
        let tools = vec![ToolSpec {
            name: "get_weather".into(),
            schema: json!({}),
        }];
        let reply = respond(
            &conv,
            &tools,
            &ToolChoice::Required,
            &Limits::default(),
            &Directives::default(),
            &MockOptions::default(),
        );
        let (text, finish) = text_of(&reply);
        assert!(
            text.starts_with("Mock reply to tool result: It is 21 degrees and sunny in Paris."),
            "{text}"
        );
        assert_eq!(finish, Finish::Stop);
    }

    #[test]
    fn prompt_tokens_count_chars_and_messages() {
        let mut conv = Conversation::default();
        conv.message();
        conv.read("12345");
        conv.message();
        conv.read("123");
        count_tool(&mut conv, "t", "", &json!({}));
        // 5 + 3 + 1 + 2 chars = 11 -> 3 tokens, plus 3 per message.
        assert_eq!(conv.prompt_tokens(), 3 + 6);
    }

    #[test]
    fn embeddings_are_unit_length_and_deterministic() {
        let a = embedding(b"hello", 16);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert_eq!(a, embedding(b"hello", 16));
        assert_ne!(a, embedding(b"hello!", 16));
        assert_eq!(embedding(b"x", 3).len(), 3);
    }

    #[test]
    fn ids_are_unique_and_prefixed() {
        let a = new_id("chatcmpl-");
        assert!(a.starts_with("chatcmpl-") && a.len() == 9 + 22);
        assert_ne!(a, new_id("chatcmpl-"));
    }
}
