//! Finding things in the parsed document: the span of a dotted key path (for validation
//! errors), the key path at a byte offset (for serde errors, which only carry a span), and
//! line/column from a byte offset.

use std::ops::Range;

use toml_edit::{ArrayOfTables, Item, Key, Table, Value};

use crate::error::{KeyPath, Seg};

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// A view of anything that can sit at a key path.
#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a Table),
    Value(&'a Value),
    Tables(&'a ArrayOfTables),
    Nothing,
}

impl<'a> Node<'a> {
    fn of(item: &'a Item) -> Self {
        match item {
            Item::None => Node::Nothing,
            Item::Value(v) => Node::Value(v),
            Item::Table(t) => Node::Table(t),
            Item::ArrayOfTables(a) => Node::Tables(a),
        }
    }

    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
            Node::Tables(a) => a.span(),
            Node::Nothing => None,
        }
    }

    /// The child at `seg`, with the span of its key when it has one.
    fn child(self, seg: &Seg) -> Option<(Option<Range<usize>>, Node<'a>)> {
        match seg {
            Seg::Key(k) => match self {
                Node::Table(t) => t.get_key_value(k).map(keyed),
                Node::Value(Value::InlineTable(t)) => t.get_key_value(k).map(keyed),
                Node::Value(_) | Node::Tables(_) | Node::Nothing => None,
            },
            Seg::Index(i) => match self {
                Node::Value(Value::Array(a)) => a.get(*i).map(|v| (None, Node::Value(v))),
                Node::Tables(a) => a.get(*i).map(|t| (None, Node::Table(t))),
                Node::Value(_) | Node::Table(_) | Node::Nothing => None,
            },
        }
    }

    /// All children, in document order.
    fn children(self, path: &KeyPath) -> Vec<(Option<Range<usize>>, Node<'a>, KeyPath)> {
        match self {
            Node::Table(t) => t
                .iter()
                .filter_map(|(k, _)| t.get_key_value(k))
                .map(|(key, item)| (key.span(), Node::of(item), path.key(key.get())))
                .collect(),
            Node::Value(Value::InlineTable(t)) => t
                .iter()
                .filter_map(|(k, _)| t.get_key_value(k))
                .map(|(key, item)| (key.span(), Node::of(item), path.key(key.get())))
                .collect(),
            Node::Value(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (None, Node::Value(v), path.index(i)))
                .collect(),
            Node::Tables(a) => a
                .iter()
                .enumerate()
                .map(|(i, t)| (None, Node::Table(t), path.index(i)))
                .collect(),
            Node::Value(_) | Node::Nothing => Vec::new(),
        }
    }
}

fn keyed<'a>((key, item): (&'a Key, &'a Item)) -> (Option<Range<usize>>, Node<'a>) {
    (key.span(), Node::of(item))
}

/// The span to report for `path`: a table's header, else the key's own span, else its value's;
/// when the path does not exist (a missing key) or has no span (an implicit table), the
/// deepest ancestor that has one.
pub(crate) fn span_of(root: &Table, path: &KeyPath) -> Option<Range<usize>> {
    let mut node = Node::Table(root);
    let mut best = None;
    for seg in &path.0 {
        let Some((key_span, child)) = node.child(seg) else {
            break;
        };
        // A `[table]` header is reported at the header (column 1), anything else at its key.
        let header = match child {
            Node::Table(t) => t.span(),
            Node::Value(_) | Node::Tables(_) | Node::Nothing => None,
        };
        if let Some(span) = header.or(key_span).or_else(|| child.span()) {
            best = Some(span);
        }
        node = child;
    }
    best
}

/// The deepest key path whose key or value contains byte `offset`.
pub(crate) fn path_at(root: &Table, offset: usize) -> Option<KeyPath> {
    search(Node::Table(root), &KeyPath::root(), offset)
}

fn search(node: Node<'_>, path: &KeyPath, offset: usize) -> Option<KeyPath> {
    for (key_span, child, child_path) in node.children(path) {
        if contains(key_span.as_ref(), offset) {
            return Some(child_path);
        }
        if let Some(found) = search(child, &child_path, offset) {
            return Some(found);
        }
    }
    if contains(node.span().as_ref(), offset) {
        return Some(path.clone());
    }
    None
}

fn contains(span: Option<&Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.contains(&offset) || (s.is_empty() && s.start == offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml_edit::ImDocument;

    const DOC: &str = r#"[server]
listen = "127.0.0.1:8080"

[providers.openai]
kind = "openai"
headers = { "X-Org" = "o" }

[models."gpt-4.1"]
deployments = [
  { provider = "openai", weight = 2 },
  { provider = "azur" },
]

[[models.other.deployments]]
provider = "openai"

[[models.other.deployments]]
provider = "nope"
"#;

    fn line_of(doc: &ImDocument<String>, path: &KeyPath) -> Option<(usize, usize)> {
        span_of(doc.as_table(), path).map(|s| line_col(DOC, s.start))
    }

    #[test]
    fn walks_std_tables_inline_tables_and_both_array_kinds() {
        let doc = ImDocument::parse(DOC.to_owned()).unwrap();
        let root = KeyPath::root();
        assert_eq!(
            line_of(&doc, &root.key("server").key("listen")),
            Some((2, 1))
        );
        assert_eq!(
            line_of(&doc, &root.key("providers").key("openai")),
            Some((4, 1))
        );
        let header = root
            .key("providers")
            .key("openai")
            .key("headers")
            .key("X-Org");
        assert_eq!(line_of(&doc, &header), Some((6, 13)));
        let dep = root
            .key("models")
            .key("gpt-4.1")
            .key("deployments")
            .index(1);
        assert_eq!(line_of(&doc, &dep.key("provider")), Some((11, 5)));
        let aot = root.key("models").key("other").key("deployments").index(1);
        assert_eq!(line_of(&doc, &aot.key("provider")), Some((18, 1)));
    }

    #[test]
    fn missing_keys_fall_back_to_the_parent_table() {
        let doc = ImDocument::parse(DOC.to_owned()).unwrap();
        let missing = KeyPath::root()
            .key("providers")
            .key("openai")
            .key("api_key");
        assert_eq!(line_of(&doc, &missing), Some((4, 1)));
        let nothing = KeyPath::root().key("store").key("url");
        assert_eq!(line_of(&doc, &nothing), None);
    }

    #[test]
    fn finds_the_path_at_an_offset() {
        let doc = ImDocument::parse(DOC.to_owned()).unwrap();
        let offset = DOC.find("\"azur\"").unwrap();
        let path = path_at(doc.as_table(), offset).unwrap();
        assert_eq!(
            path.to_string(),
            "models.\"gpt-4.1\".deployments[1].provider"
        );
        let offset = DOC.find("127.0.0.1").unwrap();
        assert_eq!(
            path_at(doc.as_table(), offset).unwrap().to_string(),
            "server.listen"
        );
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("a\nbé c", 5), (2, 3));
        assert_eq!(line_col("abc", 0), (1, 1));
    }
}
