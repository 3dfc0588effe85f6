//! The OpenAPI 3.1 document served at `GET /openapi.json`, generated with utoipa from the
//! `#[utoipa::path]` annotations beside the handlers and the wire types in [`schemas`].
//!
//! The one decision to know: handlers read bodies as raw JSON and validate them by hand
//! (`agentd_providers::validate`), the way OpenAI and Anthropic do, so the types here are not the
//! types the code deserialises into. They describe the accepted shapes closely enough for a
//! client generator or a fuzzer (tests/fuzz) to produce valid and invalid requests; the fuzzer
//! run against the real binary is what keeps them honest. Unknown fields are allowed wherever
//! the real APIs allow them (every request object except the admin API's).

use bytes::Bytes;
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

/// Security scheme: an API key as `Authorization: Bearer <key>` (OpenAI SDKs).
pub(crate) const BEARER_API_KEY: &str = "bearer_api_key";
/// Security scheme: an API key as `x-api-key: <key>` (Anthropic SDKs).
pub(crate) const X_API_KEY: &str = "x_api_key";
/// Security scheme: the admin key (`AGENTD_ADMIN_KEY`) as `Authorization: Bearer <key>`.
pub(crate) const ADMIN_KEY: &str = "admin_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "agentd",
        description = "agentd's LLM gateway: the OpenAI- and Anthropic-compatible API, the admin API and the operational endpoints.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        routes::openai::chat_completions,
        routes::openai::embeddings,
        routes::openai::list_models,
        routes::openai::get_model,
        routes::anthropic::messages,
        routes::admin::create_key,
        routes::admin::list_keys,
        routes::admin::get_key,
        routes::admin::revoke_key,
        routes::tenants::list,
        routes::tenants::get,
        routes::tenants::set,
        routes::tenants::delete,
        routes::reports::spend,
        routes::reports::breakers,
        routes::reports::budgets,
        routes::ops::healthz,
        routes::ops::readyz,
        routes::ops::metrics,
        routes::ops::openapi_json,
    ),
    components(schemas(
        schemas::OpenAiError,
        schemas::AnthropicError,
        // Referenced only from the event-stream schemas' `contentSchema`.
        schemas::ChatCompletionChunk,
        schemas::MessageStreamData,
    )),
    modifiers(&Security),
    tags(
        (name = "openai", description = "OpenAI-compatible API (`Authorization: Bearer` or `x-api-key`)"),
        (name = "anthropic", description = "Anthropic-compatible API (`x-api-key` or `Authorization: Bearer`)"),
        (name = "admin", description = "Admin API (`Authorization: Bearer $AGENTD_ADMIN_KEY`); 404 when no admin key is configured"),
        (name = "operations", description = "Health, readiness, metrics and this document; no key needed"),
    ),
)]
pub(crate) struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            BEARER_API_KEY,
            bearer("An API key (`agentd keys create`, `POST /admin/keys`) as `Authorization: Bearer <key>`."),
        );
        components.add_security_scheme(
            X_API_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "An API key as `x-api-key: <key>`, as the Anthropic SDKs send it.",
            ))),
        );
        components.add_security_scheme(
            ADMIN_KEY,
            bearer("The admin key (`AGENTD_ADMIN_KEY` or `auth.admin_key`) as `Authorization: Bearer <key>`."),
        );
    }
}

/// The document as JSON bytes, built on first use and then shared.
pub(crate) fn document() -> Bytes {
    static DOC: OnceLock<Bytes> = OnceLock::new();
    DOC.get_or_init(|| {
        let json = ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serialises (it is built from static data)");
        Bytes::from(json)
    })
    .clone()
}

/// The gateway's document merged with `extra` (the agent runtime's routes), as JSON bytes.
/// Paths and components already in the gateway's document win.
pub(crate) fn document_with(extra: utoipa::openapi::OpenApi) -> Bytes {
    let json = ApiDoc::openapi()
        .merge_from(extra)
        .to_json()
        .expect("the OpenAPI document serialises (it is built from static data)");
    Bytes::from(json)
}

/// Error responses, one set per kind of route, shared by the annotations in `routes/`.
pub(crate) mod responses {
    use super::schemas::{AnthropicError, OpenAiError};
    use utoipa::IntoResponses;

    /// What `/v1/chat/completions` and `/v1/embeddings` answer when they fail.
    #[derive(IntoResponses)]
    #[allow(dead_code)]
    pub(crate) enum OpenAiCallErrors {
        /// The body is not valid JSON or breaks the API's rules (`param` names the field), or a
        /// header is malformed.
        #[response(status = 400)]
        BadRequest(OpenAiError),
        /// No API key, or an unknown or revoked one.
        #[response(status = 401)]
        Unauthorized(OpenAiError),
        /// A budget is exhausted (`type: insufficient_quota`).
        #[response(status = 402)]
        Budget(OpenAiError),
        /// The provider refused the key it was given.
        #[response(status = 403)]
        Forbidden(OpenAiError),
        /// The model does not exist (`code: model_not_found`).
        #[response(status = 404)]
        NotFound(OpenAiError),
        /// The body is larger than `server.max_body_bytes`.
        #[response(status = 413)]
        TooLarge(OpenAiError),
        /// A rate limit (the gateway's or the provider's); see `Retry-After`.
        #[response(status = 429, headers(("retry-after" = u64, description = "Seconds to wait")))]
        RateLimited(OpenAiError),
        /// A bug in agentd.
        #[response(status = 500)]
        Internal(OpenAiError),
        /// The provider failed or answered something unusable.
        #[response(status = 502)]
        Upstream(OpenAiError),
        /// The gateway cannot serve now (store down, every deployment's breaker open).
        #[response(status = 503)]
        Unavailable(OpenAiError),
        /// The provider did not answer in time.
        #[response(status = 504)]
        UpstreamTimeout(OpenAiError),
    }

    /// What `/v1/messages` answers when it fails: the same statuses, in Anthropic's shape.
    #[derive(IntoResponses)]
    #[allow(dead_code)]
    pub(crate) enum AnthropicCallErrors {
        /// The body is not valid JSON or breaks the API's rules, a header is malformed, or a
        /// budget is exhausted.
        #[response(status = 400)]
        BadRequest(AnthropicError),
        /// No API key, or an unknown or revoked one.
        #[response(status = 401)]
        Unauthorized(AnthropicError),
        /// A budget is exhausted.
        #[response(status = 402)]
        Budget(AnthropicError),
        /// The provider refused the key it was given.
        #[response(status = 403)]
        Forbidden(AnthropicError),
        /// The model does not exist.
        #[response(status = 404)]
        NotFound(AnthropicError),
        /// The body is larger than `server.max_body_bytes`.
        #[response(status = 413)]
        TooLarge(AnthropicError),
        /// A rate limit (the gateway's or the provider's); see `Retry-After`.
        #[response(status = 429, headers(("retry-after" = u64, description = "Seconds to wait")))]
        RateLimited(AnthropicError),
        /// A bug in agentd.
        #[response(status = 500)]
        Internal(AnthropicError),
        /// The provider failed or answered something unusable.
        #[response(status = 502)]
        Upstream(AnthropicError),
        /// The gateway cannot serve now (`overloaded_error`).
        #[response(status = 503)]
        Unavailable(AnthropicError),
        /// The provider did not answer in time.
        #[response(status = 504)]
        UpstreamTimeout(AnthropicError),
    }

    /// What a `/v1` route that reads only the key store answers when it fails.
    #[derive(IntoResponses)]
    #[allow(dead_code)]
    pub(crate) enum KeyOnlyErrors {
        /// No API key, or an unknown or revoked one.
        #[response(status = 401)]
        Unauthorized(OpenAiError),
        /// A bug in agentd.
        #[response(status = 500)]
        Internal(OpenAiError),
        /// The key store is unavailable.
        #[response(status = 503)]
        Unavailable(OpenAiError),
    }

    /// What every admin route answers when it fails.
    #[derive(IntoResponses)]
    #[allow(dead_code)]
    pub(crate) enum AdminErrors {
        /// No admin key, or a wrong one.
        #[response(status = 401)]
        Unauthorized(OpenAiError),
        /// The admin API is disabled (no `AGENTD_ADMIN_KEY`), or the key does not exist.
        #[response(status = 404)]
        NotFound(OpenAiError),
        /// The store failed (a bug or a broken database).
        #[response(status = 500)]
        Internal(OpenAiError),
        /// The store is unavailable.
        #[response(status = 503)]
        Unavailable(OpenAiError),
    }

    /// A refused request (admin routes with a body or a query).
    #[derive(IntoResponses)]
    #[allow(dead_code)]
    pub(crate) enum AdminBadRequest {
        /// The body or the query is malformed (`code` and `message` say how).
        #[response(status = 400)]
        BadRequest(OpenAiError),
    }

    /// A body over `server.max_body_bytes`.
    #[derive(IntoResponses)]
    #[allow(dead_code)]
    pub(crate) enum TooLarge {
        /// The body is larger than `server.max_body_bytes`.
        #[response(status = 413)]
        TooLarge(OpenAiError),
    }
}

/// The wire types of the document. Only utoipa reads them (the handlers validate raw JSON), so
/// their fields are never read in Rust; serde attributes are here for utoipa to read names and
/// tags from.
#[allow(dead_code)]
pub(crate) mod schemas {
    use serde::Deserialize;
    use serde_json::{Map, Value};
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
    use utoipa::openapi::RefOr;
    use utoipa::ToSchema;

    // -----------------------------------------------------------------------------------------
    // Errors

    /// OpenAI's error body: `/v1/*` (except `/v1/messages`), `/admin/*`, unknown routes.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct OpenAiError {
        pub error: OpenAiErrorDetail,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct OpenAiErrorDetail {
        /// What went wrong and how to fix it.
        pub message: String,
        /// The category: `invalid_request_error`, `authentication_error`, `permission_error`,
        /// `insufficient_quota`, `rate_limit_error`, `api_error`, `service_unavailable`.
        #[serde(rename = "type")]
        #[schema(example = "invalid_request_error")]
        pub kind: String,
        /// The request field at fault (`messages[0].role`), when there is one.
        #[schema(required)]
        pub param: Option<String>,
        /// A stable machine-readable code (`model_not_found`, `invalid_api_key`, …).
        #[schema(required, example = "model_not_found")]
        pub code: Option<String>,
    }

    /// Anthropic's error body (`/v1/messages`).
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct AnthropicError {
        #[serde(rename = "type")]
        pub kind: ErrorTag,
        pub error: AnthropicErrorDetail,
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum ErrorTag {
        Error,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct AnthropicErrorDetail {
        /// `invalid_request_error`, `authentication_error`, `permission_error`,
        /// `not_found_error`, `request_too_large`, `rate_limit_error`, `api_error`,
        /// `overloaded_error`.
        #[serde(rename = "type")]
        #[schema(example = "invalid_request_error")]
        pub kind: String,
        pub message: String,
    }

    // -----------------------------------------------------------------------------------------
    // OpenAI chat completions: request

    /// `POST /v1/chat/completions`. Fields not listed are accepted and forwarded.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ChatCompletionRequest {
        /// A model from `GET /v1/models` (or a router's name).
        #[schema(min_length = 1, example = "mock")]
        pub model: String,
        #[schema(min_items = 1)]
        pub messages: Vec<ChatMessage>,
        /// Answer as server-sent events (`text/event-stream`).
        pub stream: Option<bool>,
        /// Only allowed when `stream` is true.
        pub stream_options: Option<StreamOptions>,
        #[schema(minimum = 1)]
        pub max_tokens: Option<u64>,
        #[schema(minimum = 1)]
        pub max_completion_tokens: Option<u64>,
        #[schema(minimum = 0.0, maximum = 2.0)]
        pub temperature: Option<f64>,
        #[schema(minimum = 0.0, maximum = 1.0)]
        pub top_p: Option<f64>,
        #[schema(minimum = -2.0, maximum = 2.0)]
        pub presence_penalty: Option<f64>,
        #[schema(minimum = -2.0, maximum = 2.0)]
        pub frequency_penalty: Option<f64>,
        /// How many choices to generate.
        #[schema(minimum = 1, maximum = 128)]
        pub n: Option<u64>,
        pub stop: Option<Stop>,
        pub seed: Option<i64>,
        /// An end-user id, forwarded.
        pub user: Option<String>,
        pub parallel_tool_calls: Option<bool>,
        pub tools: Option<Vec<ChatTool>>,
        pub tool_choice: Option<ToolChoice>,
        /// Deprecated: `tools` with `type: function`.
        #[schema(deprecated)]
        pub functions: Option<Vec<FunctionDef>>,
        /// Forwarded as given (`{"type": "json_object"}`, `{"type": "json_schema", …}`).
        #[schema(value_type = Option<Object>)]
        pub response_format: Option<Map<String, Value>>,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct StreamOptions {
        /// Send a last chunk with `usage`.
        pub include_usage: Option<bool>,
    }

    /// A stop sequence or up to four of them.
    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(crate) enum Stop {
        One(String),
        Many(Vec<String>),
    }

    /// A message, told apart by `role`.
    #[derive(Deserialize, ToSchema)]
    #[serde(tag = "role", rename_all = "lowercase")]
    pub(crate) enum ChatMessage {
        System {
            content: TextContent,
            name: Option<String>,
        },
        Developer {
            content: TextContent,
            name: Option<String>,
        },
        User {
            content: UserContent,
            name: Option<String>,
        },
        /// `content` may be left out (or null) only when `tool_calls` or `function_call` is given.
        Assistant {
            content: Option<AssistantContent>,
            tool_calls: Option<Vec<ToolCall>>,
            function_call: Option<FunctionCall>,
            refusal: Option<String>,
            name: Option<String>,
        },
        Tool {
            tool_call_id: String,
            content: TextContent,
        },
        /// Deprecated: a `tool` message.
        Function {
            name: String,
            content: Option<String>,
        },
    }

    /// A string, or an array of text parts.
    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(crate) enum TextContent {
        Text(String),
        Parts(Vec<TextPart>),
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub(crate) enum TextPart {
        Text { text: String },
    }

    /// A string, or an array of text, image, audio and file parts.
    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(crate) enum UserContent {
        Text(String),
        Parts(Vec<UserPart>),
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub(crate) enum UserPart {
        Text { text: String },
        ImageUrl { image_url: ImageUrl },
        InputAudio { input_audio: InputAudio },
        File { file: FileRef },
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ImageUrl {
        /// An `https:` URL or a `data:` URL.
        pub url: String,
        pub detail: Option<ImageDetail>,
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum ImageDetail {
        Auto,
        Low,
        High,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct InputAudio {
        /// Base64 audio.
        pub data: String,
        #[schema(example = "wav")]
        pub format: String,
    }

    /// Either `file_data` or `file_id`.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct FileRef {
        pub file_data: Option<String>,
        pub file_id: Option<String>,
        pub filename: Option<String>,
    }

    /// A string, or an array of text and refusal parts.
    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(crate) enum AssistantContent {
        Text(String),
        Parts(Vec<AssistantPart>),
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub(crate) enum AssistantPart {
        Text { text: String },
        Refusal { refusal: String },
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ToolCall {
        pub id: String,
        #[serde(rename = "type")]
        pub kind: FunctionTag,
        pub function: FunctionCall,
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum FunctionTag {
        Function,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct FunctionCall {
        pub name: String,
        /// The arguments as a JSON text.
        pub arguments: String,
    }

    /// A tool the model may call, told apart by `type`.
    #[derive(Deserialize, ToSchema)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub(crate) enum ChatTool {
        Function {
            function: FunctionDef,
        },
        /// GPT-5 free-form tools (forwarded to OpenAI only).
        Custom {
            custom: CustomToolDef,
        },
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct FunctionDef {
        #[schema(pattern = "^[a-zA-Z0-9_-]{1,64}$")]
        pub name: String,
        pub description: Option<String>,
        /// A JSON Schema for the arguments.
        #[schema(value_type = Option<Object>)]
        pub parameters: Option<Map<String, Value>>,
        pub strict: Option<bool>,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct CustomToolDef {
        #[schema(pattern = "^[a-zA-Z0-9_-]{1,64}$")]
        pub name: String,
        pub description: Option<String>,
    }

    /// `none`, `auto`, `required`, or a named function.
    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(crate) enum ToolChoice {
        Mode(ToolChoiceMode),
        Named(NamedToolChoice),
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum ToolChoiceMode {
        None,
        Auto,
        Required,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct NamedToolChoice {
        #[serde(rename = "type")]
        pub kind: FunctionTag,
        pub function: FunctionName,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct FunctionName {
        pub name: String,
    }

    // -----------------------------------------------------------------------------------------
    // OpenAI chat completions: response

    /// A whole answer (`stream` false or absent).
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ChatCompletion {
        pub id: String,
        #[schema(example = "chat.completion")]
        pub object: String,
        /// Unix seconds.
        pub created: i64,
        pub model: String,
        pub choices: Vec<ChatChoice>,
        pub usage: Option<ChatUsage>,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ChatChoice {
        pub index: u32,
        pub message: ChatAnswer,
        /// `stop`, `length`, `tool_calls`, `content_filter`, `function_call`.
        #[schema(required)]
        pub finish_reason: Option<String>,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ChatAnswer {
        #[schema(example = "assistant")]
        pub role: String,
        #[schema(required)]
        pub content: Option<String>,
        pub tool_calls: Option<Vec<ToolCall>>,
        pub refusal: Option<String>,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ChatUsage {
        pub prompt_tokens: u64,
        pub completion_tokens: u64,
        pub total_tokens: u64,
        #[schema(value_type = Option<Object>)]
        pub prompt_tokens_details: Option<Map<String, Value>>,
        #[schema(value_type = Option<Object>)]
        pub completion_tokens_details: Option<Map<String, Value>>,
    }

    /// One chunk of a streamed answer (`stream: true`).
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ChatCompletionChunk {
        pub id: String,
        #[schema(example = "chat.completion.chunk")]
        pub object: String,
        pub created: i64,
        pub model: String,
        pub choices: Vec<ChunkChoice>,
        /// Only in the last chunk, and only with `stream_options.include_usage`.
        pub usage: Option<ChatUsage>,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ChunkChoice {
        pub index: u32,
        pub delta: ChunkDelta,
        #[schema(required)]
        pub finish_reason: Option<String>,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ChunkDelta {
        pub role: Option<String>,
        pub content: Option<String>,
        #[schema(value_type = Option<Vec<Object>>)]
        pub tool_calls: Option<Vec<Value>>,
        pub refusal: Option<String>,
    }

    /// One server-sent event of `POST /v1/chat/completions` with `stream: true`: `data` is a
    /// [`ChatCompletionChunk`], an error (`{"error": …}`, when the stream fails midway) or
    /// `[DONE]`, the last event. (OpenAPI 3.1 describes an event stream by one event's schema.)
    pub(crate) struct ChatStreamEvent;

    impl utoipa::PartialSchema for ChatStreamEvent {
        fn schema() -> RefOr<Schema> {
            let chunk = serde_json::json!({
                "contentMediaType": "application/json",
                "contentSchema": {"anyOf": [
                    {"$ref": "#/components/schemas/ChatCompletionChunk"},
                    {"$ref": "#/components/schemas/OpenAiError"},
                ]},
            });
            let data = ObjectBuilder::new()
                .schema_type(Type::String)
                .extensions(Some(
                    [
                        ("if", serde_json::json!({"const": "[DONE]"})),
                        ("else", chunk),
                    ]
                    .into_iter()
                    .collect(),
                ));
            sse_event(data, "A chunk, an error, or `[DONE]`")
        }
    }

    impl ToSchema for ChatStreamEvent {}

    /// One server-sent event of `POST /v1/messages` with `stream: true`: `message_start`,
    /// `content_block_start`, `content_block_delta`, `content_block_stop`, `message_delta`,
    /// `message_stop`, `ping`, or `error` when the stream fails midway.
    pub(crate) struct MessageStreamEvent;

    impl utoipa::PartialSchema for MessageStreamEvent {
        fn schema() -> RefOr<Schema> {
            let data = ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/json")
                .extensions(Some(
                    [(
                        "contentSchema",
                        serde_json::json!({"$ref": "#/components/schemas/MessageStreamData"}),
                    )]
                    .into_iter()
                    .collect(),
                ));
            sse_event(data, "The event as JSON; its `type` is the event's name")
        }
    }

    impl ToSchema for MessageStreamEvent {}

    /// The `data` of a Messages stream event.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct MessageStreamData {
        #[serde(rename = "type")]
        pub kind: MessageStreamEventType,
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub(crate) enum MessageStreamEventType {
        MessageStart,
        ContentBlockStart,
        ContentBlockDelta,
        ContentBlockStop,
        MessageDelta,
        MessageStop,
        Ping,
        Error,
    }

    fn sse_event(data: ObjectBuilder, data_description: &str) -> RefOr<Schema> {
        let text = || ObjectBuilder::new().schema_type(Type::String);
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("event", text())
            .property("id", text())
            .property("retry", ObjectBuilder::new().schema_type(Type::Integer))
            .property("data", data.description(Some(data_description)))
            .required("data")
            .into()
    }

    // -----------------------------------------------------------------------------------------
    // OpenAI embeddings

    /// `POST /v1/embeddings`. Fields not listed are accepted and forwarded.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct EmbeddingsRequest {
        #[schema(min_length = 1, example = "mock-embedding")]
        pub model: String,
        pub input: EmbeddingsInput,
        pub encoding_format: Option<EncodingFormat>,
        #[schema(minimum = 1)]
        pub dimensions: Option<u64>,
        pub user: Option<String>,
    }

    /// A string, an array of strings, an array of token ids or an array of token-id arrays;
    /// no string or array may be empty. Written by hand: the derive cannot put length limits on
    /// the variants of an untagged enum.
    #[derive(Deserialize)]
    pub(crate) struct EmbeddingsInput;

    impl utoipa::PartialSchema for EmbeddingsInput {
        fn schema() -> RefOr<Schema> {
            let text = || {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
            };
            let token = || {
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(u32::MAX))
            };
            let non_empty =
                |items: RefOr<Schema>| ArrayBuilder::new().items(items).min_items(Some(1));
            OneOfBuilder::new()
                .description(Some(
                    "A string, an array of strings, an array of token ids or an array of \
                     token-id arrays; no string or array may be empty.",
                ))
                .item(text())
                .item(non_empty(text().into()))
                .item(non_empty(token().into()))
                .item(non_empty(non_empty(token().into()).into()))
                .into()
        }
    }

    impl ToSchema for EmbeddingsInput {}

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum EncodingFormat {
        Float,
        Base64,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct EmbeddingsResponse {
        #[schema(example = "list")]
        pub object: String,
        pub data: Vec<Embedding>,
        pub model: String,
        pub usage: Option<EmbeddingsUsage>,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct Embedding {
        #[schema(example = "embedding")]
        pub object: String,
        pub index: u32,
        pub embedding: EmbeddingVector,
    }

    /// Floats, or base64 little-endian `f32`s when `encoding_format` is `base64`.
    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(crate) enum EmbeddingVector {
        Float(Vec<f64>),
        Base64(String),
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct EmbeddingsUsage {
        pub prompt_tokens: u64,
        pub total_tokens: u64,
    }

    // -----------------------------------------------------------------------------------------
    // OpenAI models

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct Model {
        #[schema(example = "mock")]
        pub id: String,
        #[schema(example = "model")]
        pub object: String,
        /// Unix seconds.
        pub created: i64,
        /// The provider serving it, or `agentd` for a router.
        pub owned_by: String,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ModelList {
        #[schema(example = "list")]
        pub object: String,
        pub data: Vec<Model>,
    }

    // -----------------------------------------------------------------------------------------
    // Anthropic messages: request

    /// `POST /v1/messages`. Fields not listed are accepted and forwarded.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct MessagesRequest {
        #[schema(min_length = 1, example = "mock")]
        pub model: String,
        #[schema(minimum = 1)]
        pub max_tokens: u64,
        #[schema(min_items = 1)]
        pub messages: Vec<AnthropicMessage>,
        pub system: Option<SystemPrompt>,
        /// Answer as server-sent events (`text/event-stream`).
        pub stream: Option<bool>,
        #[schema(minimum = 0.0, maximum = 1.0)]
        pub temperature: Option<f64>,
        #[schema(minimum = 0.0, maximum = 1.0)]
        pub top_p: Option<f64>,
        #[schema(minimum = 0)]
        pub top_k: Option<u64>,
        pub stop_sequences: Option<Vec<String>>,
        pub metadata: Option<Metadata>,
        pub tools: Option<Vec<AnthropicTool>>,
        pub tool_choice: Option<AnthropicToolChoice>,
        /// Extended thinking (`{"type": "enabled", "budget_tokens": N}`), forwarded.
        #[schema(value_type = Option<Object>)]
        pub thinking: Option<Map<String, Value>>,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct Metadata {
        pub user_id: Option<String>,
    }

    /// A string, or an array of text blocks.
    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(crate) enum SystemPrompt {
        Text(String),
        Blocks(Vec<TextBlock>),
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub(crate) enum TextBlock {
        Text {
            text: String,
            #[schema(value_type = Option<Object>)]
            cache_control: Option<Map<String, Value>>,
        },
    }

    /// A turn, told apart by `role`: `tool_use` blocks only in assistant turns, `tool_result`
    /// blocks only in user turns.
    #[derive(Deserialize, ToSchema)]
    #[serde(tag = "role", rename_all = "lowercase")]
    pub(crate) enum AnthropicMessage {
        User { content: UserTurnContent },
        Assistant { content: AssistantTurnContent },
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(crate) enum UserTurnContent {
        Text(String),
        Blocks(Vec<UserBlock>),
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(crate) enum AssistantTurnContent {
        Text(String),
        Blocks(Vec<AssistantBlock>),
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub(crate) enum UserBlock {
        Text {
            text: String,
        },
        Image {
            source: Source,
        },
        Document {
            source: Source,
        },
        ToolResult {
            tool_use_id: String,
            content: Option<ToolResultContent>,
            is_error: Option<bool>,
        },
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub(crate) enum AssistantBlock {
        Text {
            text: String,
        },
        ToolUse {
            id: String,
            name: String,
            #[schema(value_type = Object)]
            input: Map<String, Value>,
        },
        /// Extended thinking, passed back as received.
        Thinking {
            thinking: String,
            signature: Option<String>,
        },
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(crate) enum ToolResultContent {
        Text(String),
        Blocks(Vec<ToolResultBlock>),
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub(crate) enum ToolResultBlock {
        Text { text: String },
        Image { source: Source },
        Document { source: Source },
    }

    /// Where an image's or document's bytes are.
    #[derive(Deserialize, ToSchema)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub(crate) enum Source {
        Base64 {
            #[schema(example = "image/png")]
            media_type: String,
            data: String,
        },
        Url {
            url: String,
        },
        Text {
            data: String,
            media_type: Option<String>,
        },
        File {
            file_id: String,
        },
        Content {
            #[schema(value_type = Option<Vec<Object>>)]
            content: Option<Vec<Value>>,
        },
    }

    /// A client tool (`type` absent or `custom`) or an Anthropic server tool
    /// (`web_search_20250305`, `bash_20250124`, …).
    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(crate) enum AnthropicTool {
        Custom(CustomTool),
        Server(ServerTool),
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct CustomTool {
        #[serde(rename = "type")]
        pub kind: Option<CustomTag>,
        #[schema(pattern = "^[a-zA-Z0-9_-]{1,64}$")]
        pub name: String,
        pub description: Option<String>,
        pub input_schema: InputSchema,
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum CustomTag {
        Custom,
    }

    /// A JSON Schema for the tool's input; its `type`, when given, must be `object`.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct InputSchema {
        #[serde(rename = "type")]
        pub kind: Option<ObjectTag>,
        #[schema(value_type = Option<Object>)]
        pub properties: Option<Map<String, Value>>,
        pub required: Option<Vec<String>>,
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum ObjectTag {
        Object,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ServerTool {
        #[serde(rename = "type")]
        #[schema(pattern = "^[a-z_]+_[0-9]{8}$", example = "web_search_20250305")]
        pub kind: String,
        #[schema(example = "web_search")]
        pub name: String,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct AnthropicToolChoice {
        #[serde(rename = "type")]
        pub kind: ToolChoiceType,
        /// Required when `type` is `tool`.
        pub name: Option<String>,
        pub disable_parallel_tool_use: Option<bool>,
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum ToolChoiceType {
        Auto,
        Any,
        Tool,
        None,
    }

    // -----------------------------------------------------------------------------------------
    // Anthropic messages: response

    /// A whole answer (`stream` false or absent).
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct Message {
        pub id: String,
        #[serde(rename = "type")]
        #[schema(example = "message")]
        pub kind: String,
        #[schema(example = "assistant")]
        pub role: String,
        /// `text`, `tool_use`, `thinking`, … blocks.
        #[schema(value_type = Vec<Object>)]
        pub content: Vec<Value>,
        pub model: String,
        /// `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`, …
        #[schema(required)]
        pub stop_reason: Option<String>,
        pub stop_sequence: Option<String>,
        pub usage: MessageUsage,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct MessageUsage {
        pub input_tokens: u64,
        pub output_tokens: u64,
        pub cache_creation_input_tokens: Option<u64>,
        pub cache_read_input_tokens: Option<u64>,
    }

    // -----------------------------------------------------------------------------------------
    // Admin API

    /// `POST /admin/keys`. Unknown fields are refused.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct CreateKeyRequest {
        /// A name to recognise the key by (not blank).
        #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
        pub name: String,
        /// Default `default`.
        #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
        pub tenant: Option<String>,
        #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
        pub user: Option<String>,
        /// The key's default tier, used by routers when a request names none.
        #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
        pub tier: Option<String>,
    }

    /// An API key (never its secret, except in the answer to its creation).
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ApiKey {
        #[schema(example = "key_0123abcd")]
        pub id: String,
        #[schema(example = "api_key")]
        pub object: String,
        pub name: String,
        pub tenant: String,
        #[schema(required)]
        pub user: Option<String>,
        /// The first characters of the secret, to recognise it.
        pub prefix: String,
        #[schema(required)]
        pub tier: Option<String>,
        #[schema(format = DateTime)]
        pub created_at: String,
        #[schema(required, format = DateTime)]
        pub revoked_at: Option<String>,
    }

    /// A new key with its secret, shown only this once.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct CreatedApiKey {
        #[serde(flatten)]
        pub key: ApiKey,
        /// The secret to send as `Authorization: Bearer` or `x-api-key`.
        #[serde(rename = "key")]
        #[schema(example = "sk-agentd-0123…")]
        pub secret: String,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct KeyList {
        #[schema(example = "list")]
        pub object: String,
        pub data: Vec<ApiKey>,
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum SpendGroupBy {
        Key,
        User,
        Tenant,
        Model,
        Day,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct SpendReport {
        #[schema(example = "list")]
        pub object: String,
        pub group_by: SpendGroupBy,
        pub data: Vec<SpendRow>,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct SpendRow {
        /// The key id, user, tenant, model or day (`2026-11-23`).
        pub group: String,
        pub requests: u64,
        pub input_tokens: u64,
        pub output_tokens: u64,
        /// Dollars as a decimal string (exact).
        #[schema(example = "0.000125")]
        pub cost_usd: String,
        /// Millionths of a dollar.
        pub cost_micros: i64,
        pub cache_hits: u64,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct BreakerList {
        #[schema(example = "list")]
        pub object: String,
        pub data: Vec<BreakerEntry>,
    }

    /// One deployment's circuit breaker.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct BreakerEntry {
        pub model: String,
        pub deployment: String,
        pub provider: String,
        pub upstream_model: String,
        /// `closed`, `open` or `half_open`.
        pub state: String,
        /// The breaker's counters and timers.
        #[schema(value_type = Object)]
        pub breaker: Map<String, Value>,
        #[schema(required)]
        pub latency_ewma_ms: Option<f64>,
        pub in_flight: u64,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct Budgets {
        #[schema(example = "budgets")]
        pub object: String,
        /// The most one request may cost, in dollars (decimal string).
        #[schema(required)]
        pub max_request_usd: Option<String>,
        /// Where the counters live (`memory`, `redis`); null when no control is configured.
        #[schema(required)]
        pub counters: Option<String>,
        pub limits: Vec<BudgetLimit>,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct BudgetLimit {
        pub name: String,
        pub scope: String,
        pub window: String,
        pub limit_usd: String,
        #[serde(rename = "match")]
        #[schema(required)]
        pub match_id: Option<String>,
        /// The live counters of the current window, per scope value.
        pub counters: Vec<BudgetCounter>,
    }

    /// One budget counter: settled spend, holds of calls in flight, what remains.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct BudgetCounter {
        /// The scope value: a tenant, `tenant/user`, a key id, `*`.
        pub scope_id: String,
        /// The window's id (`20261204`, `202612`, `all`).
        pub window: String,
        /// False when the counter does not exist in the backend yet (nothing admitted this
        /// window); the amounts are then null.
        pub exists: bool,
        #[schema(required)]
        pub spent_usd: Option<String>,
        #[schema(required)]
        pub reserved_usd: Option<String>,
        #[schema(required)]
        pub remaining_usd: Option<String>,
        #[schema(required)]
        pub spent_micros: Option<i64>,
        #[schema(required)]
        pub reserved_micros: Option<i64>,
    }

    // -----------------------------------------------------------------------------------------
    // Operations

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct Health {
        #[schema(example = "ok")]
        pub status: String,
    }

    /// `ready`, or why not (`draining`, `unavailable` with the store's error).
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct Readiness {
        #[schema(example = "ready")]
        pub status: String,
        /// The store backend (`sqlite`, `postgres`).
        pub store: Option<String>,
        pub error: Option<String>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn doc() -> Value {
        serde_json::from_slice(&document()).expect("the document is JSON")
    }

    /// `(METHOD, path)` of every `.route(…)` in lib.rs, read from its source so that a route
    /// added there without an annotation fails [`every_route_is_documented`]. Paths are turned
    /// into OpenAPI templates (`{*id}` → `{id}`).
    fn routes_in_router() -> BTreeSet<(String, String)> {
        const SOURCE: &str = include_str!("lib.rs");
        const METHODS: &[&str] = &["get", "post", "put", "patch", "delete", "head", "options"];
        let mut found = BTreeSet::new();
        let mut rest = SOURCE;
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            // The call's text up to its closing parenthesis.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map(|(i, _)| i)
                .expect("balanced parentheses in lib.rs");
            let call = &rest[..end];
            let path = call
                .split('"')
                .nth(1)
                .expect("a .route( call starts with a string literal path");
            let path = path.replace("{*", "{");
            // Method routers are the identifiers directly followed by `(`: `get(`, `.delete(`.
            let mut ident = String::new();
            for c in call.chars() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    ident.push(c);
                    continue;
                }
                if c == '(' && METHODS.contains(&ident.as_str()) {
                    found.insert((ident.to_uppercase(), path.clone()));
                }
                ident.clear();
            }
        }
        found
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc = doc();
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
        ops
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let doc = doc();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        for scheme in [BEARER_API_KEY, X_API_KEY, ADMIN_KEY] {
            assert!(
                doc["components"]["securitySchemes"][scheme].is_object(),
                "{scheme}"
            );
        }
    }

    #[test]
    fn the_route_scan_finds_the_routes() {
        let routes = routes_in_router();
        for expected in [
            ("POST", "/v1/chat/completions"),
            ("GET", "/v1/models/{id}"),
            ("DELETE", "/admin/keys/{id}"),
            ("GET", "/openapi.json"),
        ] {
            assert!(
                routes.contains(&(expected.0.into(), expected.1.into())),
                "{expected:?} not in {routes:?}"
            );
        }
        assert!(routes.len() >= 16, "{routes:?}");
    }

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let routes = routes_in_router();
        let documented = documented();
        let undocumented: Vec<_> = routes.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "routes without a #[utoipa::path] listed in openapi::ApiDoc: {undocumented:?}"
        );
        let phantom: Vec<_> = documented.difference(&routes).collect();
        assert!(phantom.is_empty(), "documented but not routed: {phantom:?}");
    }

    #[test]
    fn v1_and_admin_operations_declare_their_keys_and_errors() {
        let doc = doc();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let schemes: BTreeSet<&str> = op["security"]
                    .as_array()
                    .map(|reqs| {
                        reqs.iter()
                            .flat_map(|r| r.as_object().unwrap().keys())
                            .map(String::as_str)
                            .collect()
                    })
                    .unwrap_or_default();
                let want: BTreeSet<&str> = if path.starts_with("/v1/") {
                    [BEARER_API_KEY, X_API_KEY].into()
                } else if path.starts_with("/admin/") {
                    [ADMIN_KEY].into()
                } else {
                    BTreeSet::new()
                };
                assert_eq!(schemes, want, "{method} {path}");
                if !want.is_empty() {
                    let error = if path == "/v1/messages" {
                        "#/components/schemas/AnthropicError"
                    } else {
                        "#/components/schemas/OpenAiError"
                    };
                    let unauthorized = &op["responses"]["401"]["content"]["application/json"];
                    assert_eq!(
                        unauthorized["schema"]["$ref"], error,
                        "{method} {path}: 401 body"
                    );
                }
            }
        }
        let chat = &doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"];
        assert!(chat["application/json"].is_object() && chat["text/event-stream"].is_object());
    }
}
