use agentd_core::ApiError;
use serde_json::Value;

pub fn openai_to_anthropic_request(body: &Value, upstream_model: &str) -> Result<Value, ApiError> {
    let _ = (body, upstream_model);
    unimplemented!()
}

pub fn anthropic_to_openai_request(body: &Value, upstream_model: &str) -> Result<Value, ApiError> {
    let _ = (body, upstream_model);
    unimplemented!()
}
