use super::TranslateError;
use crate::sse::SseEvent;
use agentd_core::Usage;
use bytes::Bytes;

pub struct AnthropicToOpenAiStream {
    model: String,
    include_usage: bool,
}

impl AnthropicToOpenAiStream {
    pub fn new(model: &str, include_usage: bool) -> Self {
        Self { model: model.to_owned(), include_usage }
    }
    pub fn push(&mut self, event: &SseEvent) -> Result<Vec<Bytes>, TranslateError> {
        let _ = (event, &self.model, self.include_usage);
        unimplemented!()
    }
    pub fn is_done(&self) -> bool {
        unimplemented!()
    }
    pub fn usage(&self) -> Usage {
        unimplemented!()
    }
}

pub struct OpenAiToAnthropicStream {
    model: String,
}

impl OpenAiToAnthropicStream {
    pub fn new(model: &str) -> Self {
        Self { model: model.to_owned() }
    }
    pub fn push(&mut self, event: &SseEvent) -> Result<Vec<Bytes>, TranslateError> {
        let _ = (event, &self.model);
        unimplemented!()
    }
    pub fn is_done(&self) -> bool {
        unimplemented!()
    }
    pub fn usage(&self) -> Usage {
        unimplemented!()
    }
}
