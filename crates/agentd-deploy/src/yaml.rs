//! A small YAML writer for manifests built as `serde_json::Value`s: block style, keys in the
//! order they were inserted (serde_json's `preserve_order` is not required: build maps with
//! [`map`]), strings double-quoted unless plainly safe, multi-line strings as `|` blocks.

use serde_json::Value;

/// An ordered mapping (`Value::Object` keeps insertion order only with `preserve_order`, so
/// manifests are built as a list of pairs and written in that order).
#[derive(Debug, Clone, Default)]
pub struct Map(pub Vec<(String, Node)>);

/// A manifest value.
#[derive(Debug, Clone)]
pub enum Node {
    /// A JSON scalar or array/object (written in key order of the `Value`).
    Value(Value),
    /// An ordered mapping.
    Map(Map),
    /// A sequence.
    List(Vec<Node>),
}

/// Builds an ordered map: `map([("a", 1.into()), …])`.
pub fn map<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Node)>) -> Node {
    Node::Map(Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect()))
}

/// A scalar (`s("x")`, `n(3)`) or any JSON value.
pub fn v(value: impl Into<Value>) -> Node {
    Node::Value(value.into())
}

/// A list.
pub fn list(items: impl IntoIterator<Item = Node>) -> Node {
    Node::List(items.into_iter().collect())
}

impl From<Value> for Node {
    fn from(value: Value) -> Self {
        Node::Value(value)
    }
}

/// One YAML document (no leading `---`).
pub fn to_string(node: &Node) -> String {
    let mut out = String::new();
    write_block(&mut out, node, 0);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Several documents separated by `---`.
pub fn documents(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(to_string)
        .collect::<Vec<_>>()
        .join("---\n")
}

fn is_empty_collection(node: &Node) -> Option<&'static str> {
    match node {
        Node::Map(m) if m.0.is_empty() => Some("{}"),
        Node::List(l) if l.is_empty() => Some("[]"),
        Node::Value(Value::Object(o)) if o.is_empty() => Some("{}"),
        Node::Value(Value::Array(a)) if a.is_empty() => Some("[]"),
        _ => None,
    }
}

fn is_scalar(node: &Node) -> bool {
    matches!(node, Node::Value(v) if !v.is_object() && !v.is_array())
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Writes `node` as a block at `indent` (the caller has written nothing on the current line).
fn write_block(out: &mut String, node: &Node, indent: usize) {
    match node {
        Node::Map(m) => {
            for (k, val) in &m.0 {
                pad(out, indent);
                write_entry(out, k, val, indent);
            }
        }
        Node::Value(Value::Object(o)) => {
            for (k, val) in o {
                pad(out, indent);
                write_entry(out, k, &Node::Value(val.clone()), indent);
            }
        }
        Node::List(items) => {
            for item in items {
                pad(out, indent);
                write_item(out, item, indent);
            }
        }
        Node::Value(Value::Array(items)) => {
            for item in items {
                pad(out, indent);
                write_item(out, &Node::Value(item.clone()), indent);
            }
        }
        Node::Value(scalar) => {
            pad(out, indent);
            out.push_str(&scalar_text(scalar, indent));
            out.push('\n');
        }
    }
}

fn write_entry(out: &mut String, key: &str, val: &Node, indent: usize) {
    out.push_str(&key_text(key));
    out.push(':');
    if let Some(empty) = is_empty_collection(val) {
        out.push(' ');
        out.push_str(empty);
        out.push('\n');
    } else if let Node::Value(scalar) = val.clone() {
        if is_scalar(val) {
            out.push(' ');
            out.push_str(&scalar_text(&scalar, indent + 2));
            out.push('\n');
            return;
        }
        out.push('\n');
        let child = if matches!(scalar, Value::Array(_)) {
            indent
        } else {
            indent + 2
        };
        write_block(out, val, child);
    } else {
        out.push('\n');
        // Lists under a key are not indented further (the common Kubernetes style).
        let child = if matches!(val, Node::List(_)) {
            indent
        } else {
            indent + 2
        };
        write_block(out, val, child);
    }
}

fn write_item(out: &mut String, item: &Node, indent: usize) {
    out.push_str("- ");
    if let Some(empty) = is_empty_collection(item) {
        out.push_str(empty);
        out.push('\n');
        return;
    }
    if is_scalar(item) {
        if let Node::Value(scalar) = item {
            out.push_str(&scalar_text(scalar, indent + 2));
        }
        out.push('\n');
        return;
    }
    // A map or list inside a list: the first line goes after "- ", the rest indented by 2.
    let mut inner = String::new();
    write_block(&mut inner, item, indent + 2);
    let trimmed = inner.trim_start_matches(' ');
    out.push_str(trimmed);
}

fn key_text(key: &str) -> String {
    if is_plain(key) {
        key.to_owned()
    } else {
        quote(key)
    }
}

fn scalar_text(value: &Value, indent: usize) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string_text(s, indent),
        Value::Array(_) | Value::Object(_) => unreachable!("not a scalar"),
    }
}

fn string_text(s: &str, indent: usize) -> String {
    if s.contains('\n')
        && !s.contains('\r')
        && !s.contains('\t')
        && !s.starts_with(' ')
        && s.lines().all(|l| !l.ends_with(' '))
    {
        // A literal block; `|` keeps one final newline, `|-` none.
        let chomp = if s.ends_with('\n') { "|" } else { "|-" };
        let mut out = chomp.to_owned();
        for line in s.trim_end_matches('\n').split('\n') {
            out.push('\n');
            if !line.is_empty() {
                out.extend(std::iter::repeat_n(' ', indent));
                out.push_str(line);
            }
        }
        return out;
    }
    if is_plain(s) {
        s.to_owned()
    } else {
        quote(s)
    }
}

/// Plain (unquoted) only when it cannot be read as anything but this string.
fn is_plain(s: &str) -> bool {
    const RESERVED: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~",
    ];
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
        && !s.starts_with(['-', '.'])
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str())
        && s.parse::<f64>().is_err()
        && !s.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        && !s.starts_with("0x")
        && !s.starts_with("0o")
}

/// JSON string syntax is valid YAML double-quoted syntax.
fn quote(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_nested_maps_lists_and_quotes_ambiguous_strings() {
        let doc = map([
            ("apiVersion", v("apps/v1")),
            (
                "metadata",
                map([
                    ("name", v("agentd")),
                    ("labels", map([("app.kubernetes.io/name", v("agentd"))])),
                ]),
            ),
            (
                "ports",
                list([
                    map([("name", v("http")), ("port", v(8080))]),
                    map([("name", v("yes")), ("port", v("8080"))]),
                ]),
            ),
            ("args", v(json!(["serve", "--role", "api"]))),
            ("empty", list([])),
            ("text", v("a: b\nsecond line\n")),
        ]);
        let text = to_string(&doc);
        assert_eq!(
            text,
            "apiVersion: apps/v1\nmetadata:\n  name: agentd\n  labels:\n    app.kubernetes.io/name: agentd\nports:\n- name: http\n  port: 8080\n- name: \"yes\"\n  port: \"8080\"\nargs:\n- serve\n- \"--role\"\n- api\nempty: []\ntext: |\n  a: b\n  second line\n"
        );
    }
}
