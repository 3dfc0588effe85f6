//! `${VAR}` expansion in string values.
//!
//! `${VAR}` is replaced by the variable's value, `${VAR:-default}` falls back to `default` when
//! the variable is unset or empty (as in POSIX shells), `$$` is a literal `$`, and a `$` not
//! followed by `{` or `$` is kept as is so passwords containing `$` need no escaping. Expanded
//! values are never expanded again.

/// Why a string could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExpandError {
    #[error("environment variable {0} is not set")]
    Unset(String),
    #[error("unterminated \"${{\" (missing \"}}\")")]
    Unterminated,
    #[error("invalid variable name {0:?} in \"${{…}}\"")]
    BadName(String),
}

impl ExpandError {
    /// How to fix it, in words.
    pub(crate) fn fix(&self) -> String {
        match self {
            ExpandError::Unset(var) => format!(
                "export {var} before starting agentd, or give a default with ${{{var}:-value}}"
            ),
            ExpandError::Unterminated => {
                "close the reference with \"}\", or write \"$$\" for a literal dollar".to_owned()
            }
            ExpandError::BadName(_) => {
                "variable names use letters, digits and _ and do not start with a digit".to_owned()
            }
        }
    }
}

/// Expands every `${…}` in `input` using `env`.
pub(crate) fn expand(
    input: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail.find('}').ok_or(ExpandError::Unterminated)?;
            let inner = &tail[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !valid_name(name) {
                return Err(ExpandError::BadName(name.to_owned()));
            }
            match (env(name), default) {
                (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(ExpandError::Unset(name.to_owned())),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "KEY" => Some("sk-123".to_owned()),
            "EMPTY" => Some(String::new()),
            "DOLLAR" => Some("${KEY}".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_defaults_and_escapes() {
        assert_eq!(expand("Bearer ${KEY}", &env).unwrap(), "Bearer sk-123");
        assert_eq!(expand("${NOPE:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand("${EMPTY:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand("${EMPTY}", &env).unwrap(), "");
        assert_eq!(expand("${KEY:-x}", &env).unwrap(), "sk-123");
        assert_eq!(expand("${NOPE:-}", &env).unwrap(), "");
        assert_eq!(expand("a$$b $${KEY}", &env).unwrap(), "a$b ${KEY}");
        assert_eq!(expand("pa$word$", &env).unwrap(), "pa$word$");
        // Values are not expanded again.
        assert_eq!(expand("${DOLLAR}", &env).unwrap(), "${KEY}");
        assert_eq!(expand("no vars", &env).unwrap(), "no vars");
    }

    #[test]
    fn reports_unset_and_malformed_references() {
        assert_eq!(
            expand("x ${MISSING} y", &env),
            Err(ExpandError::Unset("MISSING".to_owned()))
        );
        assert_eq!(
            ExpandError::Unset("MISSING".to_owned()).to_string(),
            "environment variable MISSING is not set"
        );
        assert_eq!(expand("${KEY", &env), Err(ExpandError::Unterminated));
        assert_eq!(
            expand("${1X}", &env),
            Err(ExpandError::BadName("1X".to_owned()))
        );
        assert_eq!(
            expand("${}", &env),
            Err(ExpandError::BadName(String::new()))
        );
    }
}
