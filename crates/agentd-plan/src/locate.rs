//! Where a key sits in the prices file: the dotted key path at a byte offset (serde errors carry
//! only a span), the span of a key path (validation errors), and the line of an offset.

use std::fmt;
use std::ops::Range;

use toml_edit::{Item, Table, Value};

/// A dotted key path such as `platforms.fly.items[1].monthly`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Seg>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub(crate) fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_owned()));
        p
    }

    pub(crate) fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// Builds a path from dotted segments (`"platforms.fly.app"`); for validation code.
    pub(crate) fn of(dotted: &str) -> Self {
        dotted
            .split('.')
            .filter(|s| !s.is_empty())
            .fold(Self::default(), |p, s| p.key(s))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Anything that can sit at a key path.
#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a Table),
    Value(&'a Value),
    Tables(&'a toml_edit::ArrayOfTables),
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
        match (seg, self) {
            (Seg::Key(k), Node::Table(t)) => t
                .get_key_value(k)
                .map(|(key, item)| (key.span(), Node::of(item))),
            (Seg::Key(k), Node::Value(Value::InlineTable(t))) => t
                .get_key_value(k)
                .map(|(key, item)| (key.span(), Node::of(item))),
            (Seg::Index(i), Node::Value(Value::Array(a))) => {
                a.get(*i).map(|v| (None, Node::Value(v)))
            }
            (Seg::Index(i), Node::Tables(a)) => a.get(*i).map(|t| (None, Node::Table(t))),
            (Seg::Key(_) | Seg::Index(_), _) => None,
        }
    }

    /// All children in document order, with their key spans and paths.
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

/// The span to report for `path`: a table's header, else the key, else its value; for a path
/// that does not exist (a missing key) the deepest ancestor that has a span.
pub(crate) fn span_of(root: &Table, path: &KeyPath) -> Option<Range<usize>> {
    let mut node = Node::Table(root);
    let mut best = None;
    for seg in &path.0 {
        let Some((key_span, child)) = node.child(seg) else {
            break;
        };
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
pub(crate) fn path_at(root: &Table, offset: usize) -> KeyPath {
    search(Node::Table(root), &KeyPath::default(), offset).unwrap_or_default()
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
    contains(node.span().as_ref(), offset).then(|| path.clone())
}

fn contains(span: Option<&Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.contains(&offset) || (s.is_empty() && s.start == offset))
}
