//! HTTP tools: build the request from the arguments, send it through the SSRF guard,
//! follow redirects by hand (each hop checked again), read a capped body.

use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use reqwest::Url;
use serde_json::{Map, Value};

use super::ssrf::{GuardedResolver, Refused};
use super::{HttpSpec, ToolOutput, Tools};

/// Redirect hops followed before giving up.
const MAX_REDIRECTS: usize = 5;
/// How much of an error response's body the model sees.
const ERROR_BODY_BYTES: usize = 512;
const USER_AGENT: &str = concat!("agentd/", env!("CARGO_PKG_VERSION"));
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A client for tools: no automatic redirects (we follow them, checking each hop) and no
/// proxy from the environment (a proxy would resolve the destination itself, out of the
/// guard's sight). With a resolver, every name goes through the guard.
pub(super) fn client(resolver: Option<Arc<GuardedResolver>>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(USER_AGENT);
    if let Some(resolver) = resolver {
        builder = builder.dns_resolver(resolver);
    }
    builder
        .build()
        .expect("the HTTP client for tools could not be built (TLS backend)")
}

pub(super) async fn call(
    tools: &Tools,
    spec: &HttpSpec,
    args: &Value,
    idempotency_key: &str,
) -> ToolOutput {
    match tokio::time::timeout(spec.timeout, run(tools, spec, args, idempotency_key)).await {
        Ok(Ok(output)) => output,
        Ok(Err(message)) => ToolOutput::error(message),
        Err(_) => ToolOutput::error(format!("timed out after {:?}", spec.timeout)),
    }
}

async fn run(
    tools: &Tools,
    spec: &HttpSpec,
    args: &Value,
    idempotency_key: &str,
) -> Result<ToolOutput, String> {
    let (url, body) = prepare(spec, args)?;
    let idempotency_key = HeaderValue::from_str(idempotency_key)
        .map_err(|_| "the idempotency key is not a valid header value".to_owned())?;
    send(tools, spec, url, body, Some(idempotency_key)).await
}

/// Sends a JSON body to `url` through the guard (no exceptions but the guard's own): what run
/// webhooks use. Redirects are followed and checked as for tools; a status >= 400 is an error.
pub(super) async fn post_json(
    tools: &Tools,
    url: &str,
    body: &Value,
    timeout: Duration,
) -> Result<(), String> {
    let spec = HttpSpec {
        url: url.to_owned(),
        method: Method::POST,
        headers: Vec::new(),
        timeout,
        max_response_bytes: ERROR_BODY_BYTES,
        allow_private: false,
    };
    let url = Url::parse(url).map_err(|err| format!("invalid URL: {err}"))?;
    let body = serde_json::to_vec(body).map_err(|err| err.to_string())?;
    let output =
        match tokio::time::timeout(timeout, send(tools, &spec, url, Some(body), None)).await {
            Ok(Ok(output)) => output,
            Ok(Err(message)) => ToolOutput::error(message),
            Err(_) => ToolOutput::error(format!("timed out after {timeout:?}")),
        };
    if output.is_error {
        Err(output.content)
    } else {
        Ok(())
    }
}

/// Sends the request, following redirects, and turns the response into the output.
async fn send(
    tools: &Tools,
    spec: &HttpSpec,
    mut url: Url,
    mut body: Option<Vec<u8>>,
    idempotency_key: Option<HeaderValue>,
) -> Result<ToolOutput, String> {
    let mut headers = configured_headers(spec)?;
    if let Some(key) = idempotency_key {
        headers.insert(IDEMPOTENCY_KEY, key);
    }
    let client = if spec.allow_private {
        &tools.open
    } else {
        &tools.guarded
    };
    let mut method = spec.method.clone();

    let mut hops = 0;
    let mut response = loop {
        check_destination(tools, spec, &url)?;
        let mut request = client
            .request(method.clone(), url.clone())
            .headers(headers.clone());
        if let Some(body) = &body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = request.send().await.map_err(|err| send_error(err, &url))?;
        let status = response.status();
        let location = match response.headers().get(LOCATION) {
            Some(location) if status.is_redirection() => location,
            // Not a redirect, or one without a target (304): the response is the answer.
            _ => break response,
        };
        if hops == MAX_REDIRECTS {
            return Err(format!("too many redirects (more than {MAX_REDIRECTS})"));
        }
        hops += 1;
        let next = location
            .to_str()
            .ok()
            .and_then(|location| url.join(location).ok())
            .ok_or_else(|| format!("HTTP {}: redirect to an invalid location", status.as_u16()))?;
        // As browsers and reqwest do: 301/302/303 turn other methods into a GET without body;
        // 307/308 repeat the request as it was.
        if matches!(
            status,
            StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND | StatusCode::SEE_OTHER
        ) && method != Method::GET
            && method != Method::HEAD
        {
            method = Method::GET;
            body = None;
        }
        // The configured headers are credentials for the configured origin.
        if next.origin() != url.origin() {
            let key = headers.remove(&IDEMPOTENCY_KEY);
            headers.clear();
            if let Some(key) = key {
                headers.insert(IDEMPOTENCY_KEY, key);
            }
        }
        url = next;
    };

    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let cap = spec.max_response_bytes.min(ERROR_BODY_BYTES);
        // The status is the news; a body that fails to arrive does not change it.
        let (bytes, _) = read_capped(&mut response, cap).await.unwrap_or_default();
        let text = text(&bytes);
        let text = text.trim();
        return Ok(ToolOutput::error(if text.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {}: {text}", status.as_u16())
        }));
    }
    let (bytes, truncated) = read_capped(&mut response, spec.max_response_bytes)
        .await
        .map_err(|err| format!("reading the response failed: {}", chain(&err.without_url())))?;
    let mut content = text(&bytes).into_owned();
    if truncated {
        content.push_str(&format!(
            "\n[truncated at {} bytes]",
            spec.max_response_bytes
        ));
    } else if content.is_empty() {
        content = format!("HTTP {status} (empty body)");
    }
    Ok(ToolOutput::ok(content))
}

/// The first URL and the body, from the spec and the arguments.
fn prepare(spec: &HttpSpec, args: &Value) -> Result<(Url, Option<Vec<u8>>), String> {
    let empty = Map::new();
    let object = match args {
        Value::Object(object) => object,
        Value::Null => &empty,
        _ => return Err("invalid arguments: expected an object".to_owned()),
    };
    let mut used = Vec::new();
    let url = substitute(&spec.url, object, &mut used)?;
    let mut url = Url::parse(&url)
        .map_err(|err| format!("invalid URL after substituting arguments: {err}"))?;
    let rest = object.iter().filter(|(name, _)| !used.contains(name));

    let in_query = matches!(
        spec.method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
    );
    if in_query {
        let mut pairs = Vec::new();
        for (name, value) in rest {
            match value {
                Value::Null => {}
                Value::Array(items) => {
                    for item in items {
                        pairs.push((name, query_value(item)));
                    }
                }
                value => pairs.push((name, query_value(value))),
            }
        }
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok((url, None))
    } else {
        let body: Map<String, Value> = rest.map(|(k, v)| (k.clone(), v.clone())).collect();
        let body = serde_json::to_vec(&body).map_err(|err| err.to_string())?;
        Ok((url, Some(body)))
    }
}

fn query_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Replaces `{name}` placeholders (names of letters, digits and `_`) by the argument of that
/// name, percent-encoded; other braces are left alone. Records the names used.
fn substitute<'a>(
    template: &str,
    args: &'a Map<String, Value>,
    used: &mut Vec<&'a String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name = after.find('}').map(|close| &after[..close]);
        match name {
            Some(name)
                if !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                let (key, value) = args
                    .get_key_value(name)
                    .filter(|(_, value)| !value.is_null())
                    .ok_or_else(|| format!("invalid arguments: /{name}: required by the URL"))?;
                let text = match value {
                    Value::String(text) => text.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(format!(
                            "invalid arguments: /{name}: must be a string, number or boolean to go into the URL"
                        ))
                    }
                };
                // Percent-encoding keeps `/`, `?`, `#` and `@` out of the URL's structure, but
                // URL parsers still resolve `.` and `..` segments, encoded or not.
                if text == "." || text == ".." {
                    return Err(format!(
                        "invalid arguments: /{name}: \"{text}\" is not allowed in the URL"
                    ));
                }
                percent_encode(&text, &mut out);
                used.push(key);
                rest = &after[name.len() + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Encodes everything but RFC 3986's unreserved characters, which is safe in a path segment,
/// a query value and a host label alike.
fn percent_encode(text: &str, out: &mut String) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

fn configured_headers(spec: &HttpSpec) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::with_capacity(spec.headers.len());
    for (name, value) in &spec.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("the tool's header name {name:?} is not valid"))?;
        // Never echo the value: it is a secret.
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| format!("the tool's header {name} has an invalid value"))?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(headers)
}

/// Scheme and, unless the tool allows private destinations, the host: IP literals never reach
/// the guarded resolver, so they are checked here, on every hop.
fn check_destination(tools: &Tools, spec: &HttpSpec, url: &Url) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "refused: only http and https URLs are allowed, not {}",
            url.scheme()
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| "refused: the URL has no host".to_owned())?;
    if !spec.allow_private {
        tools
            .guard
            .check_host(host)
            .map_err(|refused| format!("refused: {refused}"))?;
    }
    Ok(())
}

/// A failed send as the model should see it: the guard's refusal if that is the cause, else
/// the error chain without the URL (whose query may carry configured secrets).
fn send_error(err: reqwest::Error, url: &Url) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(error) = source {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return format!("refused: {refused}");
        }
        source = error.source();
    }
    let host = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => "the tool's URL".to_owned(),
    };
    format!("request to {host} failed: {}", chain(&err.without_url()))
}

/// An error and its sources, `: `-separated, without repeating a message its source already
/// says.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(error) = source {
        let message = error.to_string();
        if !out.ends_with(&message) {
            out.push_str(": ");
            out.push_str(&message);
        }
        source = error.source();
    }
    out
}

/// Reads the body up to `cap` bytes; `true` if there was more.
async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// The body as text: invalid UTF-8 replaced, and a character cut in half by the cap dropped
/// rather than shown as a replacement character.
fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(without_partial_char(bytes))
}

fn without_partial_char(bytes: &[u8]) -> &[u8] {
    for back in 1..=bytes.len().min(4) {
        let byte = bytes[bytes.len() - back];
        if byte & 0xC0 != 0x80 {
            // The last character starts here: how long should it be?
            let needed = match byte {
                0xF0.. => 4,
                0xE0.. => 3,
                0xC0.. => 2,
                _ => 1,
            };
            return if needed > back {
                &bytes[..bytes.len() - back]
            } else {
                bytes
            };
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn substituted(template: &str, args: Value) -> Result<String, String> {
        let Value::Object(args) = args else {
            unreachable!()
        };
        substitute(template, &args, &mut Vec::new())
    }

    #[test]
    fn placeholders_are_percent_encoded() {
        assert_eq!(
            substituted(
                "https://api.test/users/{id}/posts?q={q}",
                json!({"id": "a/b c@d?#", "q": "é&x=1"})
            )
            .unwrap(),
            "https://api.test/users/a%2Fb%20c%40d%3F%23/posts?q=%C3%A9%26x%3D1"
        );
        assert_eq!(
            substituted("https://api.test/{n}/{b}", json!({"n": 1.5, "b": true})).unwrap(),
            "https://api.test/1.5/true"
        );
        // Braces that are not placeholders stay.
        assert_eq!(
            substituted("https://api.test/{}/{a-b}/{x", json!({})).unwrap(),
            "https://api.test/{}/{a-b}/{x"
        );
    }

    #[test]
    fn placeholder_values_are_checked() {
        assert_eq!(
            substituted("https://api.test/{id}", json!({})),
            Err("invalid arguments: /id: required by the URL".to_owned())
        );
        assert_eq!(
            substituted("https://api.test/{id}", json!({"id": null})),
            Err("invalid arguments: /id: required by the URL".to_owned())
        );
        assert_eq!(
            substituted("https://api.test/{id}", json!({"id": [1]})),
            Err(
                "invalid arguments: /id: must be a string, number or boolean to go into the URL"
                    .to_owned()
            )
        );
        assert_eq!(
            substituted("https://api.test/a/{id}/b", json!({"id": ".."})),
            Err("invalid arguments: /id: \"..\" is not allowed in the URL".to_owned())
        );
    }

    #[test]
    fn partial_characters_are_dropped_at_the_cut() {
        let e_acute = "é".as_bytes();
        assert_eq!(without_partial_char(&e_acute[..1]), b"");
        assert_eq!(without_partial_char(e_acute), e_acute);
        assert_eq!(without_partial_char(b"ab"), b"ab");
        let emoji = "a😀".as_bytes();
        assert_eq!(without_partial_char(&emoji[..3]), b"a");
        assert_eq!(without_partial_char(emoji), emoji);
        assert_eq!(text(b"a\xffb"), "a\u{fffd}b");
    }
}
