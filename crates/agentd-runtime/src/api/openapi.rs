//! The OpenAPI description of the agent API ([`super::router`]) and of the queue admin routes
//! ([`super::admin_router`]), which the binary merges into the gateway's `/openapi.json`.
//!
//! The one decision to know: like the gateway's document, this one is written beside the code,
//! not generated from it. The handlers read bodies as raw JSON and answer `serde_json::Value`s
//! built by their `to_json` functions, so the types here are doc-only mirrors of those shapes and
//! the operations hang on doc-only stubs (`paths`), leaving the handlers free to change. Two
//! checks keep them honest: `crates/agentd/tests/openapi.rs` fails when a `.route(` of `mod.rs`
//! is missing here, and the fuzzer (tests/fuzz) checks every answer of the real binary against
//! this description.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The description of every route of [`super::router`] and [`super::admin_router`]. It names
/// the gateway's security schemes (`bearer_api_key`, `x_api_key`, `admin_key`) and carries
/// their definitions too, so it stands alone; merged into the gateway's document, the
/// gateway's definitions win.
pub fn openapi() -> utoipa::openapi::OpenApi {
    AgentApiDoc::openapi()
}

#[derive(OpenApi)]
#[openapi(
    paths(
        paths::ok,
        paths::info,
        paths::create_assistant,
        paths::search_assistants,
        paths::count_assistants,
        paths::get_assistant,
        paths::get_assistant_graph,
        paths::get_assistant_schemas,
        paths::create_thread,
        paths::search_threads,
        paths::get_thread,
        paths::update_thread,
        paths::delete_thread,
        paths::get_thread_state,
        paths::get_thread_history,
        paths::post_thread_history,
        paths::create_run,
        paths::list_runs,
        paths::stream_run,
        paths::wait_run,
        paths::create_thread_cron,
        paths::get_run,
        paths::delete_run,
        paths::join_run,
        paths::join_run_stream,
        paths::cancel_run,
        paths::run_socket,
        paths::thread_socket,
        paths::create_stateless_run,
        paths::stream_stateless_run,
        paths::wait_stateless_run,
        paths::create_cron,
        paths::search_crons,
        paths::delete_cron,
        paths::list_queues,
        paths::list_pools,
        paths::list_dead_letters,
        paths::retry_dead_letter,
        paths::drop_dead_letter,
    ),
    components(schemas(schemas::AgentApiError)),
    modifiers(&Security),
    tags(
        (name = "agents", description = "The agent API's health and server info; no key needed"),
        (name = "assistants", description = "LangGraph-compatible assistants: one per `[agents.<name>]` of the config, read-only (`Authorization: Bearer` or `x-api-key`)"),
        (name = "threads", description = "LangGraph-compatible threads (`Authorization: Bearer` or `x-api-key`)"),
        (name = "runs", description = "LangGraph-compatible runs, on a thread or stateless (`Authorization: Bearer` or `x-api-key`)"),
        (name = "crons", description = "LangGraph-compatible crons (`Authorization: Bearer` or `x-api-key`)"),
        (name = "queues", description = "The run queue's streams and dead letters (`Authorization: Bearer $AGENTD_ADMIN_KEY`); 404 when no admin key is configured"),
    ),
)]
struct AgentApiDoc;

/// The gateway's schemes, under the same names (`agentd_gateway`'s `openapi.rs`).
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
            "bearer_api_key",
            bearer("An API key as `Authorization: Bearer <key>`."),
        );
        components.add_security_scheme(
            "x_api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "An API key as `x-api-key: <key>`, as the LangGraph SDKs send it.",
            ))),
        );
        components.add_security_scheme(
            "admin_key",
            bearer("The admin key (`AGENTD_ADMIN_KEY`) as `Authorization: Bearer <key>`."),
        );
    }
}

/// Error responses shared by the operations.
#[allow(dead_code)]
mod responses {
    use super::schemas::AgentApiError;
    use utoipa::IntoResponses;

    /// What every operation behind a key may answer.
    #[derive(IntoResponses)]
    pub(super) enum KeyErrors {
        /// No API key, or an unknown or revoked one.
        #[response(status = 401)]
        Unauthorized(AgentApiError),
        /// The store failed (see the server log).
        #[response(status = 500)]
        Internal(AgentApiError),
        /// The store or the queue is unavailable, or too many requests are in flight
        /// (`server.max_concurrent_requests`); retry shortly.
        #[response(status = 503)]
        Unavailable(AgentApiError),
    }

    /// What every admin operation may answer.
    #[derive(IntoResponses)]
    pub(super) enum AdminErrors {
        /// No admin key, or a wrong one.
        #[response(status = 401)]
        Unauthorized(AgentApiError),
        /// The admin API is disabled (no `AGENTD_ADMIN_KEY`), or the stream or dead letter
        /// does not exist.
        #[response(status = 404)]
        NotFound(AgentApiError),
        /// The queue is unavailable; retry shortly.
        #[response(status = 503)]
        Unavailable(AgentApiError),
    }

    /// What an operation that reads a JSON body may answer.
    #[derive(IntoResponses)]
    pub(super) enum BodyErrors {
        /// The body is larger than `server.max_body_bytes`.
        #[response(status = 413)]
        TooLarge(AgentApiError),
        /// The body is not JSON, not an object, or a field is invalid (`error.param` names it).
        #[response(status = 422)]
        Invalid(AgentApiError),
    }

    /// What an operation with path or query parameters may answer.
    #[derive(IntoResponses)]
    pub(super) enum ParamErrors {
        /// A path or query parameter cannot be decoded (not UTF-8 once percent-decoded).
        #[response(status = 400)]
        BadRequest(AgentApiError),
    }

    /// 404: the thread, run, assistant or cron named does not exist for this key's tenant.
    #[derive(IntoResponses)]
    pub(super) enum NotFound {
        /// The thread, run, assistant or cron does not exist (for this key's tenant).
        #[response(status = 404)]
        NotFound(AgentApiError),
    }

    /// 422 for an operation without a body (a query parameter or header is invalid).
    #[derive(IntoResponses)]
    pub(super) enum Invalid {
        /// A query parameter or header is invalid (`error.param` names it).
        #[response(status = 422)]
        Invalid(AgentApiError),
    }

    /// What a run-creating operation may answer besides the body errors.
    #[derive(IntoResponses)]
    pub(super) enum RunErrors {
        /// The assistant does not exist, or the thread does not (and `if_not_exists` is not
        /// `create`).
        #[response(status = 404)]
        NotFound(AgentApiError),
        /// The thread has a run in progress and `multitask_strategy` is `reject`.
        #[response(status = 409)]
        Conflict(AgentApiError),
    }

    /// `wait` and `join` hold the request until the run ends.
    #[derive(IntoResponses)]
    pub(super) enum Slow {
        /// The run did not end within `server.request_timeout_ms`; join it again.
        #[response(status = 504)]
        Timeout(AgentApiError),
    }
}

/// The wire types. Only utoipa reads them (the handlers build JSON by hand), so their fields
/// are never read in Rust; the serde attributes are there for utoipa to read names from.
#[allow(dead_code)]
pub(crate) mod schemas {
    use serde::Deserialize;
    use serde_json::{Map, Value};
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;
    use utoipa::ToSchema;

    // -----------------------------------------------------------------------------------------
    // Errors

    /// An error. Errors of the agent API itself carry `detail` and `message` (read by the
    /// LangGraph SDKs) besides OpenAI's `error`; those of the gateway's middleware (401, 503
    /// overloaded) carry `error` only.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct AgentApiError {
        pub error: ErrorDetail,
        /// What went wrong (the same text as `error.message`).
        pub detail: Option<String>,
        /// What went wrong (the same text as `error.message`).
        pub message: Option<String>,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ErrorDetail {
        pub message: String,
        /// `invalid_request_error`, `authentication_error`, `not_found_error`, `api_error`,
        /// `service_unavailable`, …
        #[serde(rename = "type")]
        pub kind: String,
        /// The field at fault (`input.messages[0].role`), when there is one.
        #[schema(required)]
        pub param: Option<String>,
        /// A stable code: `not_found`, `invalid_request`, `invalid_json`, `conflict`,
        /// `body_too_large`, `missing_api_key`, …
        #[schema(required)]
        pub code: Option<String>,
    }

    // -----------------------------------------------------------------------------------------
    // Health and info

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct OkResponse {
        pub ok: bool,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct Info {
        /// agentd's version.
        pub version: String,
        #[schema(example = "agentd")]
        pub server: String,
        /// Always null: no Python LangGraph runs here.
        #[schema(required, value_type = Option<String>)]
        pub langgraph_py_version: Option<String>,
        #[schema(value_type = Object)]
        pub flags: Map<String, Value>,
        /// The agents (`graph_id`s) served.
        pub agents: Vec<String>,
        /// The queue backend.
        pub queue: String,
        /// The store backend.
        pub store: String,
        /// The region this instance runs in (`server.region`), if known.
        #[schema(required, value_type = Option<String>)]
        pub region: Option<String>,
        /// The primary database's region (`[regions] primary`), if several regions are configured.
        #[schema(required, value_type = Option<String>)]
        pub primary_region: Option<String>,
        /// Every region of the deployment (`[regions] list`).
        pub regions: Vec<String>,
        /// This process's role: `all`, `api` or `worker`.
        pub role: String,
    }

    // -----------------------------------------------------------------------------------------
    // Assistants

    /// An assistant: one per `[agents.<name>]`, with LangGraph's system-assistant id.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct Assistant {
        /// `uuid5(6ba7b821-9dad-11d1-80b4-00c04fd430c8, graph_id)`.
        pub assistant_id: String,
        /// The agent's name.
        pub graph_id: String,
        pub name: String,
        #[schema(required)]
        pub description: Option<String>,
        #[schema(value_type = Object)]
        pub config: Map<String, Value>,
        #[schema(value_type = Object)]
        pub context: Map<String, Value>,
        #[schema(value_type = Object)]
        pub metadata: Map<String, Value>,
        pub version: i64,
        #[schema(format = DateTime)]
        pub created_at: String,
        #[schema(format = DateTime)]
        pub updated_at: String,
    }

    /// `POST /assistants/search` and `/assistants/count`; every field is optional.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct AssistantSearch {
        pub graph_id: Option<String>,
        /// A substring of the name.
        pub name: Option<String>,
        #[schema(value_type = Option<Object>)]
        pub metadata: Option<Map<String, Value>>,
        #[schema(minimum = 0, maximum = 1000)]
        pub limit: Option<i64>,
        #[schema(minimum = 0)]
        pub offset: Option<i64>,
        /// Accepted and ignored (assistants come in config order).
        pub sort_by: Option<String>,
        /// Accepted and ignored.
        pub sort_order: Option<String>,
    }

    /// `POST /assistants`: agents are declared in the config, so this only answers the
    /// existing assistant of `graph_id` when `if_exists` is `do_nothing` (409 otherwise).
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct AssistantCreate {
        pub graph_id: String,
        pub if_exists: Option<IfExists>,
        pub assistant_id: Option<String>,
        pub name: Option<String>,
        pub description: Option<String>,
        #[schema(value_type = Option<Object>)]
        pub config: Option<Map<String, Value>>,
        #[schema(value_type = Option<Object>)]
        pub context: Option<Map<String, Value>>,
        #[schema(value_type = Option<Object>)]
        pub metadata: Option<Map<String, Value>>,
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub(crate) enum IfExists {
        Raise,
        DoNothing,
    }

    /// The agent as a graph: `__start__` → `agent` (↔ `tools` when it has tools) → `__end__`.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct Graph {
        #[schema(value_type = Vec<Object>)]
        pub nodes: Vec<Value>,
        #[schema(value_type = Vec<Object>)]
        pub edges: Vec<Value>,
    }

    /// JSON Schemas of the agent's input, output, state, config and context.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct GraphSchemas {
        pub graph_id: String,
        #[schema(value_type = Object)]
        pub input_schema: Value,
        #[schema(value_type = Object)]
        pub output_schema: Value,
        #[schema(value_type = Object)]
        pub state_schema: Value,
        #[schema(value_type = Object)]
        pub config_schema: Value,
        #[schema(value_type = Object)]
        pub context_schema: Value,
    }

    // -----------------------------------------------------------------------------------------
    // Threads

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum ThreadStatus {
        Idle,
        Busy,
        Interrupted,
        Error,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct Thread {
        pub thread_id: String,
        #[schema(format = DateTime)]
        pub created_at: String,
        #[schema(format = DateTime)]
        pub updated_at: String,
        #[schema(value_type = Object)]
        pub metadata: Map<String, Value>,
        pub status: ThreadStatus,
        /// The state its last run left (`{"messages": [...]}`); null before the first run.
        #[schema(required, value_type = Option<Object>)]
        pub values: Option<Map<String, Value>>,
        /// Always `{}`: agentd agents do not pause for human input.
        #[schema(value_type = Object)]
        pub interrupts: Map<String, Value>,
        #[schema(value_type = Object)]
        pub config: Map<String, Value>,
        /// The thread's time to live, when it has one.
        #[schema(required)]
        pub ttl: Option<ThreadTtl>,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ThreadTtl {
        /// Minutes (renewed on use).
        pub ttl: i64,
        pub strategy: TtlStrategy,
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum TtlStrategy {
        Delete,
    }

    /// `POST /threads`; every field is optional (an empty body creates a thread).
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ThreadCreate {
        /// 1 to 128 visible ASCII characters; default a new UUID.
        #[schema(pattern = "^[!-~]{1,128}$")]
        pub thread_id: Option<String>,
        #[schema(value_type = Option<Object>)]
        pub metadata: Option<Map<String, Value>>,
        /// When `thread_id` exists: `raise` (409, the default) or `do_nothing` (answer it).
        pub if_exists: Option<IfExists>,
        /// Stored as `metadata.graph_id`.
        pub graph_id: Option<String>,
        pub ttl: Option<TtlSpec>,
    }

    /// Minutes, greater than 0 and less than 10⁷, as a number or as
    /// `{"ttl": minutes, "strategy": "delete"}`.
    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(crate) enum TtlSpec {
        Minutes(f64),
        Object(TtlObject),
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct TtlObject {
        pub ttl: f64,
        pub strategy: Option<TtlStrategy>,
    }

    /// `PATCH /threads/{thread_id}`: merges `metadata` into the thread's.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ThreadUpdate {
        #[schema(value_type = Option<Object>)]
        pub metadata: Option<Map<String, Value>>,
    }

    /// `POST /threads/search`; every field is optional. Newest first unless `sort_order` is
    /// `asc`.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ThreadSearch {
        /// Every key must be present in the thread's metadata with an equal value.
        #[schema(value_type = Option<Object>)]
        pub metadata: Option<Map<String, Value>>,
        pub status: Option<ThreadStatus>,
        pub ids: Option<Vec<String>>,
        #[schema(minimum = 0, maximum = 1000)]
        pub limit: Option<i64>,
        #[schema(minimum = 0)]
        pub offset: Option<i64>,
        /// Accepted and ignored (threads sort by `created_at`).
        pub sort_by: Option<String>,
        pub sort_order: Option<SortOrder>,
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum SortOrder {
        Asc,
        Desc,
    }

    /// A thread's state: agentd keeps one checkpoint per thread, the state its last run left.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct ThreadState {
        #[schema(value_type = Object)]
        pub values: Map<String, Value>,
        /// Always empty: a thread at rest has no next node.
        pub next: Vec<String>,
        #[schema(value_type = Vec<Object>)]
        pub tasks: Vec<Value>,
        #[schema(value_type = Vec<Object>)]
        pub interrupts: Vec<Value>,
        pub checkpoint: Checkpoint,
        #[schema(value_type = Object)]
        pub metadata: Map<String, Value>,
        #[schema(format = DateTime)]
        pub created_at: String,
        /// Always null.
        #[schema(required, value_type = Option<Object>)]
        pub parent_checkpoint: Option<Value>,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct Checkpoint {
        pub thread_id: String,
        pub checkpoint_ns: String,
        pub checkpoint_id: String,
        /// Always null.
        #[schema(required, value_type = Option<Object>)]
        pub checkpoint_map: Option<Value>,
    }

    /// `POST /threads/{thread_id}/history`; every field is optional.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct HistoryQuery {
        #[schema(minimum = 0, maximum = 1000)]
        pub limit: Option<i64>,
        /// Accepted and ignored (one checkpoint per thread).
        #[schema(value_type = Option<Object>)]
        pub before: Option<Value>,
        /// Accepted and ignored.
        #[schema(value_type = Option<Object>)]
        pub metadata: Option<Value>,
        /// Accepted and ignored.
        #[schema(value_type = Option<Object>)]
        pub checkpoint: Option<Value>,
    }

    // -----------------------------------------------------------------------------------------
    // Runs

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum RunStatus {
        Pending,
        Running,
        Success,
        Error,
        Timeout,
        Interrupted,
    }

    /// What a new run does when its thread already has one pending or running.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum MultitaskStrategy {
        Reject,
        Enqueue,
        Interrupt,
        Rollback,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct Run {
        pub run_id: String,
        /// The run's thread (a temporary one for a stateless run).
        pub thread_id: String,
        /// The assistant's UUID.
        pub assistant_id: String,
        #[schema(format = DateTime)]
        pub created_at: String,
        #[schema(format = DateTime)]
        pub updated_at: String,
        pub status: RunStatus,
        #[schema(value_type = Object)]
        pub metadata: Map<String, Value>,
        /// What the request asked for: `stream_mode`, `config`, `context`, `webhook`,
        /// `on_disconnect`, ….
        #[schema(value_type = Object)]
        pub kwargs: Map<String, Value>,
        pub multitask_strategy: MultitaskStrategy,
        /// Why it failed or was interrupted.
        #[schema(required)]
        pub error: Option<String>,
        /// How many times a worker claimed it.
        pub attempt: i64,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) enum StreamMode {
        #[serde(rename = "values")]
        Values,
        #[serde(rename = "updates")]
        Updates,
        #[serde(rename = "messages-tuple")]
        MessagesTuple,
        #[serde(rename = "messages")]
        Messages,
        #[serde(rename = "events")]
        Events,
        #[serde(rename = "debug")]
        Debug,
        #[serde(rename = "custom")]
        Custom,
        #[serde(rename = "tasks")]
        Tasks,
        #[serde(rename = "checkpoints")]
        Checkpoints,
    }

    /// One stream mode or a list of them.
    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(crate) enum StreamModes {
        One(StreamMode),
        Many(Vec<StreamMode>),
    }

    /// The run's input.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct RunInput {
        pub messages: Option<Vec<InputMessage>>,
    }

    /// A message: a string (a user message) or an object.
    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(crate) enum InputMessage {
        Text(String),
        Message(Message),
    }

    /// A message in OpenAI's shape (`role`) or LangChain's (`type`: `human`, `ai`, `system`,
    /// `tool`; when both are given, `type` wins). A `tool` message needs `tool_call_id`.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct Message {
        pub role: Role,
        /// A string or a list of content parts.
        pub content: Option<MessageContent>,
        pub id: Option<String>,
        pub name: Option<String>,
        pub tool_call_id: Option<String>,
        #[schema(value_type = Option<Vec<Object>>)]
        pub tool_calls: Option<Vec<Value>>,
        #[schema(value_type = Option<Object>)]
        pub additional_kwargs: Option<Map<String, Value>>,
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum Role {
        User,
        Assistant,
        System,
        Developer,
        Tool,
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(crate) enum MessageContent {
        Text(String),
        #[schema(value_type = Vec<Object>)]
        Parts(Vec<Value>),
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum IfNotExists {
        Reject,
        Create,
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum OnDisconnect {
        Cancel,
        Continue,
    }

    /// A run request (`POST /threads/{thread_id}/runs[/stream|/wait]`, `POST
    /// /runs[/stream|/wait]`). `command` (resuming an interrupt) is refused with 422: agentd
    /// agents do not pause for human input. Other LangGraph fields (`stream_subgraphs`,
    /// `stream_resumable`, `checkpoint`, `durability`, …) are accepted and ignored.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct RunCreate {
        /// The assistant's UUID or its `graph_id` (the agent's name).
        #[schema(example = "echo")]
        pub assistant_id: String,
        pub input: Option<RunInput>,
        /// Default `values`.
        pub stream_mode: Option<StreamModes>,
        /// Default `enqueue`.
        pub multitask_strategy: Option<MultitaskStrategy>,
        /// On a thread that does not exist: `reject` (404, the default) or `create` it.
        pub if_not_exists: Option<IfNotExists>,
        /// Whether a client that disconnects cancels the run: default `cancel` for `stream`
        /// and `wait`, `continue` (not cancelled) for background runs.
        pub on_disconnect: Option<OnDisconnect>,
        /// The run stays `pending` this long.
        #[schema(minimum = 0, maximum = 2592000)]
        pub after_seconds: Option<f64>,
        /// An `http(s)://` URL the run is POSTed to when it ends.
        #[schema(pattern = "^https?://", max_length = 2048)]
        pub webhook: Option<String>,
        /// Stored on the run; `metadata.tag` is the tag task routes match.
        #[schema(value_type = Option<Object>)]
        pub metadata: Option<Map<String, Value>>,
        #[schema(value_type = Option<Object>)]
        pub config: Option<Map<String, Value>>,
        #[schema(value_type = Option<Object>)]
        pub context: Option<Map<String, Value>>,
    }

    /// One server-sent event of a run's stream: `metadata` first, then the events of the
    /// stream modes asked for (`values`, `updates`, `messages` for `messages-tuple`, …), maybe
    /// `error`, and `end` last; `data` is one line of JSON (an object, an array for `messages`,
    /// `null` for `end`) and `id` the event's sequence number in the run, what `Last-Event-ID`
    /// takes. Keep-alives are `:` comment lines. Written by hand: the derive cannot say that
    /// `data` holds JSON (`contentSchema`).
    pub(crate) struct RunStreamEvent;

    impl utoipa::PartialSchema for RunStreamEvent {
        fn schema() -> RefOr<Schema> {
            let text = || ObjectBuilder::new().schema_type(Type::String);
            let data = text()
                .content_media_type("application/json")
                .description(Some("The payload, one line of JSON"))
                .extensions(Some(
                    [(
                        "contentSchema",
                        serde_json::json!({"type": ["object", "array", "null"]}),
                    )]
                    .into_iter()
                    .collect(),
                ));
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(
                    "One server-sent event of a run's stream: `metadata` first, the stream \
                     modes' events, maybe `error`, and `end` last; keep-alives are comments",
                ))
                .property("event", text().examples(["values"]))
                .property("data", data)
                .property("id", text().pattern(Some("^[0-9]+$")))
                .required("event")
                .required("data")
                .required("id")
                .into()
        }
    }

    impl ToSchema for RunStreamEvent {}

    // -----------------------------------------------------------------------------------------
    // Crons

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct Cron {
        pub cron_id: String,
        /// The assistant's UUID.
        pub assistant_id: String,
        /// The thread each firing runs on; null: a stateless run.
        #[schema(required)]
        pub thread_id: Option<String>,
        pub schedule: String,
        pub timezone: String,
        #[schema(required, format = DateTime)]
        pub end_time: Option<String>,
        #[schema(format = DateTime)]
        pub created_at: String,
        #[schema(format = DateTime)]
        pub updated_at: String,
        /// The run each firing creates (input, config, context, stream_mode, …).
        #[schema(value_type = Object)]
        pub payload: Map<String, Value>,
        #[schema(required)]
        pub user_id: Option<String>,
        /// Null when it will not fire again (`end_time` passed).
        #[schema(required, format = DateTime)]
        pub next_run_date: Option<String>,
        #[schema(value_type = Object)]
        pub metadata: Map<String, Value>,
        pub enabled: bool,
        #[schema(required)]
        pub on_run_completed: Option<String>,
    }

    /// `POST /runs/crons` and `POST /threads/{thread_id}/runs/crons`.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct CronCreate {
        /// The assistant's UUID or its `graph_id`.
        #[schema(example = "echo")]
        pub assistant_id: String,
        /// A cron expression (five or six fields).
        #[schema(example = "*/5 * * * *")]
        pub schedule: String,
        /// An IANA time zone; default `UTC`.
        pub timezone: Option<String>,
        pub input: Option<RunInput>,
        #[schema(value_type = Option<Object>)]
        pub metadata: Option<Map<String, Value>>,
        #[schema(value_type = Option<Object>)]
        pub config: Option<Map<String, Value>>,
        #[schema(value_type = Option<Object>)]
        pub context: Option<Map<String, Value>>,
        pub multitask_strategy: Option<MultitaskStrategy>,
        pub webhook: Option<String>,
        /// An RFC 3339 time after which it no longer fires.
        #[schema(format = DateTime)]
        pub end_time: Option<String>,
        pub enabled: Option<bool>,
        pub on_run_completed: Option<String>,
    }

    /// `POST /runs/crons/search`; every field is optional.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct CronSearch {
        /// The assistant's UUID or its `graph_id`.
        pub assistant_id: Option<String>,
        pub thread_id: Option<String>,
        pub enabled: Option<bool>,
        #[schema(minimum = 0, maximum = 1000)]
        pub limit: Option<i64>,
        #[schema(minimum = 0)]
        pub offset: Option<i64>,
    }

    // -----------------------------------------------------------------------------------------
    // Queue admin

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct PoolList {
        pub pools: Vec<PoolState>,
    }

    /// A worker pool's scaling state.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct PoolState {
        pub pool: String,
        /// Queued plus running runs.
        #[schema(minimum = 0)]
        pub work: u64,
        /// Runs one worker executes at once.
        #[schema(minimum = 1)]
        pub concurrency: u32,
        /// Workers the schedule wants now (also `agentd_pool_desired_workers{pool}`).
        #[schema(minimum = 0)]
        pub desired_workers: u32,
        /// The bounds of the hour.
        #[schema(minimum = 0)]
        pub min_workers: u32,
        #[schema(minimum = 0)]
        pub max_workers: u32,
        /// Whether business hours apply now.
        pub business_hours: bool,
        pub persistent: bool,
        /// Seconds since the pool last had work (null: none seen since this process started).
        #[schema(required, value_type = Option<u64>, minimum = 0)]
        pub idle_seconds: Option<u64>,
        #[schema(minimum = 0)]
        pub idle_shutdown_seconds: u64,
        /// `[pools.<name>.business_hours]`, or null.
        #[schema(required, value_type = Option<Object>)]
        pub schedule: Option<Value>,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct QueueList {
        /// The queue backend.
        pub backend: String,
        pub streams: Vec<QueueStream>,
    }

    /// One stream: a pool at one priority.
    #[derive(Deserialize, ToSchema)]
    pub(crate) struct QueueStream {
        pub stream: String,
        pub pool: String,
        pub priority: String,
        /// Messages waiting (including delayed ones).
        #[schema(minimum = 0)]
        pub depth: u64,
        /// Delivered and not yet acknowledged.
        #[schema(minimum = 0)]
        pub in_flight: u64,
        /// Age of the oldest waiting message (0 when none).
        #[schema(minimum = 0)]
        pub oldest_age_ms: u64,
        #[schema(minimum = 0)]
        pub dead: u64,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct DeadLetters {
        pub stream: String,
        pub dead_letters: Vec<DeadLetter>,
    }

    #[derive(Deserialize, ToSchema)]
    pub(crate) struct DeadLetter {
        pub stream: String,
        /// The backend's id (for retry and drop).
        pub id: String,
        /// The queue message.
        #[schema(value_type = Object)]
        pub ticket: Value,
        pub reason: String,
        pub deliveries: u32,
        /// Unix milliseconds.
        pub at_ms: i64,
    }
}

/// Doc-only stubs the operations hang on (the handlers are in the sibling modules).
#[allow(dead_code)]
mod paths {
    use super::responses::{
        AdminErrors, BodyErrors, Invalid, KeyErrors, NotFound, ParamErrors, RunErrors, Slow,
    };
    use super::schemas::{
        Assistant, AssistantCreate, AssistantSearch, Cron, CronCreate, CronSearch, DeadLetters,
        Graph, GraphSchemas, HistoryQuery, Info, OkResponse, PoolList, QueueList, Run, RunCreate,
        RunStatus, RunStreamEvent, Thread, ThreadCreate, ThreadSearch, ThreadState, ThreadUpdate,
    };

    /// The agent API is up (LangGraph clients probe it).
    #[utoipa::path(get, path = "/ok", tag = "agents", operation_id = "agentsOk",
        responses((status = 200, description = "Up", body = OkResponse)))]
    pub(super) fn ok() {}

    /// Server info: version, agents, queue and store backends.
    #[utoipa::path(get, path = "/info", tag = "agents", operation_id = "agentsInfo",
        responses((status = 200, description = "Server info", body = Info)))]
    pub(super) fn info() {}

    // --- assistants -------------------------------------------------------------------------

    /// Answers an agent's assistant (`if_exists: do_nothing`); assistants cannot be created.
    #[utoipa::path(post, path = "/assistants", tag = "assistants",
        operation_id = "createAssistant",
        request_body(content = AssistantCreate, content_type = "application/json"),
        responses(
            (status = 200, description = "The agent's assistant", body = Assistant),
            (status = 404, description = "No agent has that `graph_id`", body = super::schemas::AgentApiError),
            (status = 409, description = "The assistant exists (always, unless `if_exists` is `do_nothing`)", body = super::schemas::AgentApiError),
            BodyErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn create_assistant() {}

    /// Assistants matching the filters, in config order.
    #[utoipa::path(post, path = "/assistants/search", tag = "assistants",
        operation_id = "searchAssistants",
        request_body(content = Option<AssistantSearch>, content_type = "application/json"),
        responses(
            (status = 200, description = "The assistants (a bare array)", body = Vec<Assistant>),
            BodyErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn search_assistants() {}

    /// How many assistants match the filters.
    #[utoipa::path(post, path = "/assistants/count", tag = "assistants",
        operation_id = "countAssistants",
        request_body(content = Option<AssistantSearch>, content_type = "application/json"),
        responses(
            (status = 200, description = "The count", body = u64, content_type = "application/json"),
            BodyErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn count_assistants() {}

    /// One assistant, by UUID or `graph_id`.
    #[utoipa::path(get, path = "/assistants/{id}", tag = "assistants",
        operation_id = "getAssistant",
        params(("id" = String, Path, description = "The assistant's UUID or `graph_id`")),
        responses(
            (status = 200, description = "The assistant", body = Assistant),
            NotFound, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn get_assistant() {}

    /// The agent's graph.
    #[utoipa::path(get, path = "/assistants/{id}/graph", tag = "assistants",
        operation_id = "getAssistantGraph",
        params(
            ("id" = String, Path, description = "The assistant's UUID or `graph_id`"),
            ("xray" = Option<String>, Query, description = "Accepted and ignored"),
        ),
        responses(
            (status = 200, description = "Nodes and edges", body = Graph),
            NotFound, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn get_assistant_graph() {}

    /// The agent's input, output, state, config and context schemas.
    #[utoipa::path(get, path = "/assistants/{id}/schemas", tag = "assistants",
        operation_id = "getAssistantSchemas",
        params(("id" = String, Path, description = "The assistant's UUID or `graph_id`")),
        responses(
            (status = 200, description = "The schemas", body = GraphSchemas),
            NotFound, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn get_assistant_schemas() {}

    // --- threads ----------------------------------------------------------------------------

    /// Creates a thread.
    #[utoipa::path(post, path = "/threads", tag = "threads", operation_id = "createThread",
        request_body(content = Option<ThreadCreate>, content_type = "application/json"),
        responses(
            (status = 200, description = "The thread (the existing one with `if_exists: do_nothing`)", body = Thread),
            (status = 409, description = "`thread_id` exists and `if_exists` is `raise`", body = super::schemas::AgentApiError),
            BodyErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn create_thread() {}

    /// Threads matching the filters (stateless runs' threads are not listed).
    #[utoipa::path(post, path = "/threads/search", tag = "threads",
        operation_id = "searchThreads",
        request_body(content = Option<ThreadSearch>, content_type = "application/json"),
        responses(
            (status = 200, description = "The threads (a bare array)", body = Vec<Thread>),
            BodyErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn search_threads() {}

    /// One thread.
    #[utoipa::path(get, path = "/threads/{thread_id}", tag = "threads",
        operation_id = "getThread",
        params(("thread_id" = String, Path)),
        responses(
            (status = 200, description = "The thread", body = Thread),
            NotFound, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn get_thread() {}

    /// Merges metadata into a thread's.
    #[utoipa::path(patch, path = "/threads/{thread_id}", tag = "threads",
        operation_id = "updateThread",
        params(("thread_id" = String, Path)),
        request_body(content = Option<ThreadUpdate>, content_type = "application/json"),
        responses(
            (status = 200, description = "The thread", body = Thread),
            NotFound, BodyErrors, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn update_thread() {}

    /// Deletes a thread, its runs and their events (cancelling the runs in progress).
    #[utoipa::path(delete, path = "/threads/{thread_id}", tag = "threads",
        operation_id = "deleteThread",
        params(("thread_id" = String, Path)),
        responses(
            (status = 204, description = "Deleted"),
            NotFound, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn delete_thread() {}

    /// A thread's current state.
    #[utoipa::path(get, path = "/threads/{thread_id}/state", tag = "threads",
        operation_id = "getThreadState",
        params(
            ("thread_id" = String, Path),
            ("subgraphs" = Option<bool>, Query, description = "Accepted and ignored"),
        ),
        responses(
            (status = 200, description = "The state", body = ThreadState),
            NotFound, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn get_thread_state() {}

    /// A thread's past states, newest first (agentd keeps the last one).
    #[utoipa::path(get, path = "/threads/{thread_id}/history", tag = "threads",
        operation_id = "getThreadHistory",
        params(("thread_id" = String, Path)),
        responses(
            (status = 200, description = "The states", body = Vec<ThreadState>),
            NotFound, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn get_thread_history() {}

    /// A thread's past states, newest first, as the LangGraph SDK asks for them.
    #[utoipa::path(post, path = "/threads/{thread_id}/history", tag = "threads",
        operation_id = "postThreadHistory",
        params(("thread_id" = String, Path)),
        request_body(content = Option<HistoryQuery>, content_type = "application/json"),
        responses(
            (status = 200, description = "The states", body = Vec<ThreadState>),
            NotFound, BodyErrors, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn post_thread_history() {}

    // --- runs on a thread -------------------------------------------------------------------

    /// Creates a background run on a thread.
    #[utoipa::path(post, path = "/threads/{thread_id}/runs", tag = "runs",
        operation_id = "createRun",
        params(("thread_id" = String, Path)),
        request_body(content = RunCreate, content_type = "application/json"),
        responses(
            (status = 200, description = "The run, `pending`", body = Run,
                headers(("content-location" = String, description = "`/threads/{thread_id}/runs/{run_id}`"))),
            RunErrors, BodyErrors, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn create_run() {}

    /// A thread's runs, newest first.
    #[utoipa::path(get, path = "/threads/{thread_id}/runs", tag = "runs",
        operation_id = "listRuns",
        params(
            ("thread_id" = String, Path),
            ("limit" = Option<u32>, Query, description = "Default 10, at most 1000"),
            ("offset" = Option<u32>, Query),
            ("status" = Option<RunStatus>, Query),
        ),
        responses(
            (status = 200, description = "The runs (a bare array)", body = Vec<Run>),
            NotFound, Invalid, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn list_runs() {}

    /// Creates a run on a thread and streams its events until it ends.
    #[utoipa::path(post, path = "/threads/{thread_id}/runs/stream", tag = "runs",
        operation_id = "streamRun",
        params(("thread_id" = String, Path)),
        request_body(content = RunCreate, content_type = "application/json"),
        responses(
            (status = 200, description = "The run's events; `Location` resumes the stream (with `Last-Event-ID`)",
                body = RunStreamEvent, content_type = "text/event-stream",
                headers(
                    ("content-location" = String, description = "`/threads/{thread_id}/runs/{run_id}`"),
                    ("location" = String, description = "`/threads/{thread_id}/runs/{run_id}/stream`"),
                )),
            RunErrors, BodyErrors, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn stream_run() {}

    /// Creates a run on a thread and answers when it ends.
    #[utoipa::path(post, path = "/threads/{thread_id}/runs/wait", tag = "runs",
        operation_id = "waitRun",
        params(("thread_id" = String, Path)),
        request_body(content = RunCreate, content_type = "application/json"),
        responses(
            (status = 200, description = "The thread's final `values`, or `{\"__error__\": {\"error\", \"message\"}}` when the run failed",
                body = Object,
                headers(
                    ("content-location" = String, description = "`/threads/{thread_id}/runs/{run_id}`"),
                    ("location" = String, description = "`/threads/{thread_id}/runs/{run_id}/join`"),
                )),
            RunErrors, BodyErrors, ParamErrors, KeyErrors, Slow,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn wait_run() {}

    /// Creates a cron whose firings run on this thread.
    #[utoipa::path(post, path = "/threads/{thread_id}/runs/crons", tag = "crons",
        operation_id = "createThreadCron",
        params(("thread_id" = String, Path)),
        request_body(content = CronCreate, content_type = "application/json"),
        responses(
            (status = 200, description = "The cron", body = Cron),
            (status = 404, description = "The assistant or the thread does not exist", body = super::schemas::AgentApiError),
            BodyErrors, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn create_thread_cron() {}

    /// One run.
    #[utoipa::path(get, path = "/threads/{thread_id}/runs/{run_id}", tag = "runs",
        operation_id = "getRun",
        params(("thread_id" = String, Path), ("run_id" = String, Path)),
        responses(
            (status = 200, description = "The run", body = Run),
            NotFound, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn get_run() {}

    /// Deletes a run that ended.
    #[utoipa::path(delete, path = "/threads/{thread_id}/runs/{run_id}", tag = "runs",
        operation_id = "deleteRun",
        params(("thread_id" = String, Path), ("run_id" = String, Path)),
        responses(
            (status = 204, description = "Deleted"),
            (status = 409, description = "The run is still pending or running: cancel it first", body = super::schemas::AgentApiError),
            NotFound, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn delete_run() {}

    /// Waits for a run to end and answers the thread's final values.
    #[utoipa::path(get, path = "/threads/{thread_id}/runs/{run_id}/join", tag = "runs",
        operation_id = "joinRun",
        params(("thread_id" = String, Path), ("run_id" = String, Path)),
        responses(
            (status = 200, description = "The thread's final `values`, or `{\"__error__\": {\"error\", \"message\"}}` when the run failed", body = Object),
            NotFound, ParamErrors, KeyErrors, Slow,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn join_run() {}

    /// Streams a run's events: the stored ones after `Last-Event-ID`, then the live ones.
    #[utoipa::path(get, path = "/threads/{thread_id}/runs/{run_id}/stream", tag = "runs",
        operation_id = "joinRunStream",
        params(
            ("thread_id" = String, Path),
            ("run_id" = String, Path),
            ("stream_mode" = Option<String>, Query, description = "One stream mode (empty: every event)"),
            ("cancel_on_disconnect" = Option<bool>, Query, description = "Cancel the run when this client disconnects (`true` or `1`)"),
            ("Last-Event-ID" = Option<String>, Header, pattern = "^(-1|[0-9]+)$", description = "Resume after this event id; `-1` replays from the first event. Without it, only new events (or `end` for a run that ended)"),
        ),
        responses(
            (status = 200, description = "The run's events", body = RunStreamEvent, content_type = "text/event-stream"),
            NotFound, Invalid, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn join_run_stream() {}

    /// Cancels a run (`interrupt` keeps it as `interrupted`; `rollback` deletes it).
    #[utoipa::path(post, path = "/threads/{thread_id}/runs/{run_id}/cancel", tag = "runs",
        operation_id = "cancelRun",
        params(
            ("thread_id" = String, Path),
            ("run_id" = String, Path),
            ("wait" = Option<String>, Query, description = "`1` or `true`: answer when the run stopped (at most 30 s)"),
            ("action" = Option<String>, Query, description = "`interrupt` (the default) or `rollback`"),
        ),
        responses(
            (status = 202, description = "Cancelling"),
            (status = 204, description = "Cancelled (`wait`)"),
            NotFound, Invalid, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn cancel_run() {}

    /// Follows a run's events over a WebSocket: one text frame `{"run_id", "id", "event",
    /// "data"}` per event, closed with 1000 after `end` (1013 for a client too slow to keep up;
    /// resume with `since`).
    #[utoipa::path(get, path = "/threads/{thread_id}/runs/{run_id}/ws", tag = "runs",
        operation_id = "runSocket",
        params(
            ("thread_id" = String, Path),
            ("run_id" = String, Path),
            ("since" = Option<String>, Query, pattern = "^(-1|[0-9]+)$", description = "Send the events after this id (`-1` or none: from the first)"),
        ),
        responses(
            (status = 101, description = "Switched to the WebSocket protocol"),
            (status = 400, description = "Not a WebSocket handshake, or a parameter cannot be decoded", body = super::schemas::AgentApiError),
            (status = 426, description = "The connection cannot be upgraded", body = super::schemas::AgentApiError),
            NotFound, Invalid, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn run_socket() {}

    /// Follows a thread's runs one after another over a WebSocket (frames as for a run).
    #[utoipa::path(get, path = "/threads/{thread_id}/ws", tag = "threads",
        operation_id = "threadSocket",
        params(
            ("thread_id" = String, Path),
            ("since" = Option<String>, Query, pattern = "^(-1|[0-9]+)$", description = "Send the events after this id of the thread's current run"),
        ),
        responses(
            (status = 101, description = "Switched to the WebSocket protocol"),
            (status = 400, description = "Not a WebSocket handshake, or a parameter cannot be decoded", body = super::schemas::AgentApiError),
            (status = 426, description = "The connection cannot be upgraded", body = super::schemas::AgentApiError),
            NotFound, Invalid, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn thread_socket() {}

    // --- stateless runs ---------------------------------------------------------------------

    /// Creates a background run on a temporary thread.
    #[utoipa::path(post, path = "/runs", tag = "runs", operation_id = "createStatelessRun",
        request_body(content = RunCreate, content_type = "application/json"),
        responses(
            (status = 200, description = "The run, `pending`", body = Run,
                headers(("content-location" = String, description = "`/runs/{run_id}`"))),
            RunErrors, BodyErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn create_stateless_run() {}

    /// Creates a run on a temporary thread and streams its events until it ends.
    #[utoipa::path(post, path = "/runs/stream", tag = "runs",
        operation_id = "streamStatelessRun",
        request_body(content = RunCreate, content_type = "application/json"),
        responses(
            (status = 200, description = "The run's events", body = RunStreamEvent,
                content_type = "text/event-stream",
                headers(
                    ("content-location" = String, description = "`/runs/{run_id}`"),
                    ("location" = String, description = "`/threads/{thread_id}/runs/{run_id}/stream`"),
                )),
            RunErrors, BodyErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn stream_stateless_run() {}

    /// Creates a run on a temporary thread and answers when it ends.
    #[utoipa::path(post, path = "/runs/wait", tag = "runs", operation_id = "waitStatelessRun",
        request_body(content = RunCreate, content_type = "application/json"),
        responses(
            (status = 200, description = "The final `values`, or `{\"__error__\": {\"error\", \"message\"}}` when the run failed",
                body = Object,
                headers(
                    ("content-location" = String, description = "`/runs/{run_id}`"),
                    ("location" = String, description = "`/threads/{thread_id}/runs/{run_id}/join`"),
                )),
            RunErrors, BodyErrors, KeyErrors, Slow,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn wait_stateless_run() {}

    // --- crons ------------------------------------------------------------------------------

    /// Creates a cron whose firings are stateless runs.
    #[utoipa::path(post, path = "/runs/crons", tag = "crons", operation_id = "createCron",
        request_body(content = CronCreate, content_type = "application/json"),
        responses(
            (status = 200, description = "The cron", body = Cron),
            (status = 404, description = "The assistant does not exist", body = super::schemas::AgentApiError),
            BodyErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn create_cron() {}

    /// Crons matching the filters.
    #[utoipa::path(post, path = "/runs/crons/search", tag = "crons",
        operation_id = "searchCrons",
        request_body(content = Option<CronSearch>, content_type = "application/json"),
        responses(
            (status = 200, description = "The crons (a bare array)", body = Vec<Cron>),
            BodyErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn search_crons() {}

    /// Deletes a cron.
    #[utoipa::path(delete, path = "/runs/crons/{cron_id}", tag = "crons",
        operation_id = "deleteCron",
        params(("cron_id" = String, Path)),
        responses(
            (status = 204, description = "Deleted"),
            NotFound, ParamErrors, KeyErrors,
        ),
        security(("bearer_api_key" = []), ("x_api_key" = [])))]
    pub(super) fn delete_cron() {}

    // --- queue admin ------------------------------------------------------------------------

    /// Every pool's streams: depth, in flight, oldest age, dead letters.
    #[utoipa::path(get, path = "/admin/queues", tag = "queues", operation_id = "listQueues",
        responses(
            (status = 200, description = "The streams", body = QueueList),
            AdminErrors,
        ),
        security(("admin_key" = [])))]
    pub(super) fn list_queues() {}

    /// Each worker pool's work, the bounds of its schedule now, and the worker count it wants.
    #[utoipa::path(get, path = "/admin/pools", tag = "queues", operation_id = "listPools",
        responses(
            (status = 200, description = "The pools", body = PoolList),
            AdminErrors,
        ),
        security(("admin_key" = [])))]
    pub(super) fn list_pools() {}

    /// A stream's dead letters.
    #[utoipa::path(get, path = "/admin/queues/{stream}/dead", tag = "queues",
        operation_id = "listDeadLetters",
        params(
            ("stream" = String, Path),
            ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Default 100"),
        ),
        responses(
            (status = 200, description = "The dead letters", body = DeadLetters),
            Invalid, ParamErrors, AdminErrors,
        ),
        security(("admin_key" = [])))]
    pub(super) fn list_dead_letters() {}

    /// Puts a dead letter back on its stream.
    #[utoipa::path(post, path = "/admin/queues/{stream}/dead/{id}/retry", tag = "queues",
        operation_id = "retryDeadLetter",
        params(("stream" = String, Path), ("id" = String, Path)),
        responses(
            (status = 204, description = "Requeued"),
            ParamErrors, AdminErrors,
        ),
        security(("admin_key" = [])))]
    pub(super) fn retry_dead_letter() {}

    /// Drops a dead letter.
    #[utoipa::path(delete, path = "/admin/queues/{stream}/dead/{id}", tag = "queues",
        operation_id = "dropDeadLetter",
        params(("stream" = String, Path), ("id" = String, Path)),
        responses(
            (status = 204, description = "Dropped"),
            ParamErrors, AdminErrors,
        ),
        security(("admin_key" = [])))]
    pub(super) fn drop_dead_letter() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn doc() -> Value {
        serde_json::to_value(openapi()).expect("the document serialises")
    }

    #[test]
    fn every_operation_but_ok_and_info_names_a_key() {
        let doc = doc();
        let mut seen = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                seen += 1;
                let schemes: Vec<&str> = op["security"]
                    .as_array()
                    .map(|reqs| {
                        reqs.iter()
                            .flat_map(|r| r.as_object().unwrap().keys())
                            .map(String::as_str)
                            .collect()
                    })
                    .unwrap_or_default();
                let want: &[&str] = match path.as_str() {
                    "/ok" | "/info" => &[],
                    p if p.starts_with("/admin/") => &["admin_key"],
                    _ => &["bearer_api_key", "x_api_key"],
                };
                assert_eq!(schemes, want, "{method} {path}");
                if !want.is_empty() {
                    assert!(op["responses"]["401"].is_object(), "{method} {path}: 401");
                }
            }
        }
        assert!(seen >= 38, "{seen} operations");
        for scheme in ["bearer_api_key", "x_api_key", "admin_key"] {
            assert!(doc["components"]["securitySchemes"][scheme].is_object());
        }
    }

    #[test]
    fn run_requests_require_an_assistant_and_streams_are_event_streams() {
        let doc = doc();
        let run = &doc["components"]["schemas"]["RunCreate"];
        assert_eq!(run["required"], serde_json::json!(["assistant_id"]));
        let strategies = &doc["components"]["schemas"]["MultitaskStrategy"]["enum"];
        assert_eq!(
            strategies,
            &serde_json::json!(["reject", "enqueue", "interrupt", "rollback"])
        );
        for path in ["/threads/{thread_id}/runs/stream", "/runs/stream"] {
            let ok = &doc["paths"][path]["post"]["responses"]["200"]["content"];
            assert!(ok["text/event-stream"].is_object(), "{path}: {ok}");
        }
        let cancel = &doc["paths"]["/threads/{thread_id}/runs/{run_id}/cancel"]["post"];
        for status in ["202", "204", "404"] {
            assert!(cancel["responses"][status].is_object(), "cancel {status}");
        }
    }
}
