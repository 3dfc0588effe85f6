//! Tools an agent can call: a static result, an HTTP endpoint, or another agent (which the
//! runtime runs as a child run; here only its arguments are checked).
//!
//! The one decision to know: a tool call never fails the run. Whatever goes wrong (arguments
//! that are not JSON or break the schema, a refused destination, a timeout, an HTTP 500)
//! becomes a tool message marked `is_error` that the model reads and can act on.
//!
//! HTTP tools are guarded against SSRF by default (see [`ssrf`]): destinations are checked
//! after DNS resolution and on every redirect hop, and connections go only to checked
//! addresses.

mod http_tool;
pub mod schema;
pub mod ssrf;
#[cfg(test)]
mod tests;

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::{json, Value};

use self::ssrf::{Guard, GuardedResolver};

/// What a tool does when called.
#[derive(Debug, Clone)]
pub enum ToolSpec {
    /// Returns `result`: a string as it is, any other JSON value serialized.
    Static { result: Value },
    /// Calls an HTTP endpoint.
    Http(HttpSpec),
    /// Handled by the runtime itself (a child run); tools/ only validates its arguments.
    Agent { agent: String },
}

/// An HTTP endpoint as a tool.
///
/// Arguments named by `{name}` placeholders in `url` are substituted there (percent-encoded);
/// the others go as query parameters for GET, HEAD, DELETE and OPTIONS (an array repeats the
/// name, an object goes as JSON text, null is left out), and as a JSON object body for every
/// other method (POST, PUT, PATCH).
#[derive(Clone)]
pub struct HttpSpec {
    /// May contain `{arg}` placeholders; a placeholder's value must be a string, number or
    /// boolean.
    pub url: String,
    pub method: http::Method,
    /// Already-expanded secrets: never logged, never shown to the model, and not forwarded
    /// on a redirect to another origin.
    pub headers: Vec<(String, String)>,
    /// For the whole call: connecting, redirects and reading the body.
    pub timeout: Duration,
    /// The body beyond this is dropped and the text marked truncated.
    pub max_response_bytes: usize,
    /// Lets the tool reach loopback, private and link-local addresses (see [`ssrf`]).
    pub allow_private: bool,
}

impl fmt::Debug for HttpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, _)| (name.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("HttpSpec")
            .field("url", &self.url)
            .field("method", &self.method)
            .field("headers", &headers)
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("allow_private", &self.allow_private)
            .finish()
    }
}

/// A tool as the model sees it (name, description, parameters schema) and what it does.
#[derive(Debug, Clone)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// A JSON Schema for the arguments; `Value::Null` for a tool that takes none.
    pub parameters: Value,
    pub spec: ToolSpec,
}

/// What the model gets back: `content` is the tool message text; `is_error` marks failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    pub content: String,
    pub is_error: bool,
}

impl ToolOutput {
    pub fn ok(content: impl Into<String>) -> ToolOutput {
        ToolOutput {
            content: content.into(),
            is_error: false,
        }
    }

    pub fn error(content: impl Into<String>) -> ToolOutput {
        ToolOutput {
            content: content.into(),
            is_error: true,
        }
    }
}

/// Runs tools. Cheap to clone (the HTTP clients are shared).
#[derive(Clone)]
pub struct Tools {
    /// For tools without `allow_private`: resolves through the SSRF guard.
    guarded: reqwest::Client,
    /// For tools with `allow_private`.
    open: reqwest::Client,
    guard: Guard,
}

impl fmt::Debug for Tools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tools")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

impl Default for Tools {
    fn default() -> Tools {
        Tools::new()
    }
}

impl Tools {
    /// Tools with the default SSRF policy.
    ///
    /// # Panics
    ///
    /// If the TLS backend cannot be initialised, as `reqwest::Client::new` does.
    pub fn new() -> Tools {
        Tools::with_guard(Guard::new())
    }

    /// Tools whose SSRF guard uses `guard`, e.g. one that excepts an internal address for
    /// every tool (tests use it to reach a server on loopback as the first hop only).
    ///
    /// # Panics
    ///
    /// If the TLS backend cannot be initialised, as `reqwest::Client::new` does.
    pub fn with_guard(guard: Guard) -> Tools {
        let resolver = Arc::new(GuardedResolver::new(guard.clone()));
        Tools {
            guarded: http_tool::client(Some(resolver)),
            open: http_tool::client(None),
            guard,
        }
    }

    /// The OpenAI `tools` array entry for the model:
    /// `{"type":"function","function":{"name","description","parameters"}}`.
    pub fn definition(tool: &Tool) -> Value {
        let parameters = match &tool.parameters {
            // OpenAI wants an object schema even for a function without parameters.
            Value::Null => json!({"type": "object", "properties": {}}),
            schema => schema.clone(),
        };
        let mut function = json!({"name": tool.name, "parameters": parameters});
        if let Some(description) = &tool.description {
            function["description"] = Value::String(description.clone());
        }
        json!({"type": "function", "function": function})
    }

    /// Parses `arguments` (the model's JSON string; empty means `{}`) and validates them
    /// against the tool's schema. The error is the whole tool message for the model, e.g.
    /// `invalid arguments: /query: expected string, got integer`.
    ///
    /// The runtime calls this for agent tools before it creates the child run.
    pub fn validate_args(&self, tool: &Tool, arguments: &str) -> Result<Value, String> {
        let arguments = arguments.trim();
        let value = if arguments.is_empty() {
            // Models send "" for functions without parameters.
            Value::Object(Default::default())
        } else {
            serde_json::from_str(arguments)
                .map_err(|err| format!("invalid arguments: not valid JSON ({err})"))?
        };
        schema::validate(&tool.parameters, &value)
            .map_err(|errors| format!("invalid arguments: {}", schema::describe(&errors)))?;
        Ok(value)
    }

    /// Parses `arguments` (the model's JSON string), validates them against
    /// `tool.parameters` and runs the tool. `idempotency_key` (`"<run_id>:<step>"`) is sent as
    /// the `Idempotency-Key` header on HTTP calls.
    ///
    /// Never fails and never panics: every failure is an error output saying what was wrong.
    /// Agent tools are not run here (the runtime runs them as child runs): calling one gives
    /// an error output.
    #[tracing::instrument(name = "tool_call", skip_all, fields(tool = %tool.name))]
    pub async fn call(&self, tool: &Tool, arguments: &str, idempotency_key: &str) -> ToolOutput {
        let started = Instant::now();
        let output = AssertUnwindSafe(self.call_inner(tool, arguments, idempotency_key))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| ToolOutput::error("the tool failed unexpectedly"));
        tracing::debug!(
            is_error = output.is_error,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Tool call finished"
        );
        output
    }

    /// POSTs `body` as JSON to `url` through the SSRF guard (never `allow_private`; the
    /// guard's exceptions apply), following redirects with the same checks; a status >= 400,
    /// a refusal or a timeout is the error. For run webhooks.
    pub async fn post_json(
        &self,
        url: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<(), String> {
        http_tool::post_json(self, url, body, timeout).await
    }

    async fn call_inner(&self, tool: &Tool, arguments: &str, idempotency_key: &str) -> ToolOutput {
        let args = match self.validate_args(tool, arguments) {
            Ok(args) => args,
            Err(message) => return ToolOutput::error(message),
        };
        match &tool.spec {
            ToolSpec::Static { result } => ToolOutput::ok(match result {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            }),
            ToolSpec::Http(spec) => http_tool::call(self, spec, &args, idempotency_key).await,
            ToolSpec::Agent { agent } => ToolOutput::error(format!(
                "tool {} runs agent {agent} as a child run, which the runtime starts; \
                 Tools::call does not run agents",
                tool.name
            )),
        }
    }
}
