use super::TranslateError;
use serde_json::Value;

/// `model` = the name to report in the translated answer (the public model name the client asked for).
pub fn anthropic_to_openai_response(body: &Value, model: &str) -> Result<Value, TranslateError> {
    let _ = (body, model);
    unimplemented!()
}

pub fn openai_to_anthropic_response(body: &Value, model: &str) -> Result<Value, TranslateError> {
    let _ = (body, model);
    unimplemented!()
}
