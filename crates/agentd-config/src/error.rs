//! Configuration errors: what went wrong, where (file, line, dotted key) and how to fix it.

use std::fmt;
use std::path::PathBuf;

/// The pseudo file name used for errors that come from environment variables.
pub const ENV_FILE: &str = "<env>";

/// One problem in the configuration.
///
/// Displayed as `file:line:column: key: message; fix: fix`, e.g.
/// `agentd.toml:14:1: models.gpt-4o-mini.deployments[1].provider: unknown provider "azur"; fix: use one
/// of the names under [providers]: openai, mock`. `line`/`column` are 1-based and omitted when
/// unknown (environment variables, unreadable files); `key` is the dotted TOML path, or the name of
/// the environment variable when `file` is `<env>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file the error is in, as it was given; `<env>` for environment variables.
    pub file: PathBuf,
    /// 1-based line of the offending key (or of its table when the key is missing).
    pub line: Option<usize>,
    /// 1-based column (in characters) on `line`.
    pub column: Option<usize>,
    /// Dotted key path (`providers.openai.api_key`, `models."gpt-4.1".deployments[0].weight`), or
    /// the environment variable's name. Empty when the error is about the file as a whole.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if !self.fix.is_empty() {
            write!(f, "; fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// Every problem found in one load, in file order (environment errors last). Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// One step of a [`KeyPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A dotted key path into the TOML document, kept structured so it can be walked in the
/// `toml_edit` tree and printed with TOML quoting (`models."gpt-4.1".provider`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub(crate) Vec<Seg>);

impl KeyPath {
    pub(crate) fn root() -> Self {
        KeyPath(Vec::new())
    }

    pub(crate) fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        KeyPath(segs)
    }

    pub(crate) fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        KeyPath(segs)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    write_key(f, key)?;
                }
                Seg::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Writes a key as TOML would need it: bare when possible, else quoted.
fn write_key(f: &mut fmt::Formatter<'_>, key: &str) -> fmt::Result {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        return f.write_str(key);
    }
    f.write_str("\"")?;
    for c in key.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// Turns a serde message from `toml_edit::de` into our `(message, fix)` wording.
///
/// serde's messages are stable text (`unknown field `x`, expected one of `a`, `b``), so parsing
/// them is the price of letting serde own `deny_unknown_fields` and type checks; anything we do
/// not recognise is passed through unchanged.
pub(crate) fn explain_serde(message: &str) -> (String, String) {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let (field, valid) = split_unknown(rest);
        return (
            format!("unknown key \"{field}\""),
            unknown_key_fix(
                &field,
                &valid.iter().map(String::as_str).collect::<Vec<_>>(),
            ),
        );
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let (variant, valid) = split_unknown(rest);
        return (
            format!("invalid value \"{variant}\""),
            format!("use one of: {}", valid.join(", ")),
        );
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        let field = rest.trim_matches('`');
        return (
            format!("missing required key \"{field}\""),
            format!("add `{field} = …` (see docs/configuration.md)"),
        );
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            let expected = describe_expected(expected);
            return (
                format!(
                    "wrong type: found {}, expected {expected}",
                    describe_found(found)
                ),
                format!("write {expected} here"),
            );
        }
    }
    (
        message.to_owned(),
        "see docs/configuration.md for the expected format".to_owned(),
    )
}

/// The fix text for an unknown key: a close match if there is one, then every valid key.
pub(crate) fn unknown_key_fix(key: &str, valid: &[&str]) -> String {
    if valid.is_empty() {
        return "remove it; no keys are allowed here".to_owned();
    }
    let list = valid.join(", ");
    match closest(key, valid) {
        Some(best) => format!("did you mean \"{best}\"? the keys allowed here are: {list}"),
        None => format!("remove it or use one of the keys allowed here: {list}"),
    }
}

/// Parses "`x`, expected one of `a`, `b`" / "`x`, expected `a`" / "`x`, expected `a` or `b`" /
/// "`x`, there are no fields".
fn split_unknown(rest: &str) -> (String, Vec<String>) {
    let (name, tail) = match rest.split_once(", ") {
        Some((name, tail)) => (name, tail),
        None => (rest, ""),
    };
    let name = name.trim_matches('`').to_owned();
    let tail = tail
        .strip_prefix("expected one of ")
        .or_else(|| tail.strip_prefix("expected "))
        .unwrap_or("");
    let valid = tail
        .split(['`', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "or")
        .map(str::to_owned)
        .collect();
    (name, valid)
}

fn describe_expected(expected: &str) -> String {
    match expected.trim() {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" => {
            "an integer".to_owned()
        }
        "a sequence" => "an array".to_owned(),
        "a map" => "a table".to_owned(),
        other if other.starts_with("struct ") => "a table".to_owned(),
        other => other.to_owned(),
    }
}

fn describe_found(found: &str) -> String {
    match found.trim() {
        "map" => "a table".to_owned(),
        "sequence" => "an array".to_owned(),
        other => other.replace('`', ""),
    }
}

/// The valid name closest to `word` if it is plausibly a typo (edit distance ≤ 2, or ≤ 1 for
/// short words; a swap of two neighbours counts as one edit).
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = if word.chars().count() <= 4 { 1 } else { 2 };
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_file_line_column_key_message_and_fix() {
        let e = ConfigError {
            file: PathBuf::from("agentd.toml"),
            line: Some(14),
            column: Some(1),
            key: "models.gpt-4o-mini.deployments[1].provider".to_owned(),
            message: "unknown provider \"azur\"".to_owned(),
            fix: "use one of the names under [providers]: openai, mock".to_owned(),
        };
        assert_eq!(
            e.to_string(),
            "agentd.toml:14:1: models.gpt-4o-mini.deployments[1].provider: unknown provider \"azur\"; fix: use one of the names under [providers]: openai, mock"
        );
        let env = ConfigError {
            file: PathBuf::from(ENV_FILE),
            line: None,
            column: None,
            key: "AGENTD_LISTEN".to_owned(),
            message: "bad".to_owned(),
            fix: "good".to_owned(),
        };
        assert_eq!(env.to_string(), "<env>: AGENTD_LISTEN: bad; fix: good");
        let all = ConfigErrors(vec![e, env]);
        assert_eq!(all.to_string().lines().count(), 2);
    }

    #[test]
    fn close_names_include_swapped_letters() {
        assert_eq!(closest("mokc", &["mock", "openai"]), Some("mock"));
        assert_eq!(closest("lisen", &["listen", "region"]), Some("listen"));
        assert_eq!(closest("zzzz", &["mock"]), None);
    }

    #[test]
    fn key_paths_quote_keys_that_are_not_bare() {
        let p = KeyPath::root()
            .key("models")
            .key("gpt-4.1")
            .key("deployments")
            .index(2)
            .key("weight");
        assert_eq!(p.to_string(), "models.\"gpt-4.1\".deployments[2].weight");
        assert_eq!(
            KeyPath::root().key("models").key("").to_string(),
            "models.\"\""
        );
    }

    #[test]
    fn serde_messages_are_reworded() {
        let (m, f) = explain_serde("unknown field `lisen`, expected one of `listen`, `region`");
        assert_eq!(m, "unknown key \"lisen\"");
        assert_eq!(
            f,
            "did you mean \"listen\"? the keys allowed here are: listen, region"
        );
        let (m, f) = explain_serde("unknown field `zzz`, expected `listen`");
        assert_eq!(m, "unknown key \"zzz\"");
        assert_eq!(f, "remove it or use one of the keys allowed here: listen");
        let (m, f) = explain_serde("invalid type: string \"4MB\", expected i64");
        assert_eq!(m, "wrong type: found string \"4MB\", expected an integer");
        assert_eq!(f, "write an integer here");
        let (m, _) = explain_serde("invalid type: integer `5`, expected struct RawServer");
        assert_eq!(m, "wrong type: found integer 5, expected a table");
        let (m, f) = explain_serde("unknown variant `xml`, expected `json` or `text`");
        assert_eq!(m, "invalid value \"xml\"");
        assert_eq!(f, "use one of: json, text");
    }
}
