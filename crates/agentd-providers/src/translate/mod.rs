//! Translation between the OpenAI chat completions and Anthropic Messages wire formats.

mod request;
mod response;
mod stream;

pub use request::{anthropic_to_openai_request, openai_to_anthropic_request};
pub use response::{anthropic_to_openai_response, openai_to_anthropic_response};
pub use stream::{AnthropicToOpenAiStream, OpenAiToAnthropicStream};

/// A provider answer we cannot translate (malformed upstream).
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    #[error("upstream sent invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("upstream answer is malformed: {0}")]
    Malformed(String),
}
