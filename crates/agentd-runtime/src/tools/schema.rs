//! A small JSON Schema validator for tool arguments.
//!
//! It covers what tool schemas use in practice (the keywords OpenAI function schemas and
//! pydantic emit): `type` (one or several; `integer` vs `number`), `properties`, `required`,
//! `additionalProperties` (bool or schema), `min/maxProperties`, `items` (schema or tuple),
//! `prefixItems`, `min/maxItems`, `uniqueItems`, `enum`, `const`, `minimum`, `maximum`,
//! `exclusiveMinimum`/`exclusiveMaximum` (number or draft-4 bool), `multipleOf`,
//! `min/maxLength`, `allOf`/`anyOf`/`oneOf`/`not`, `if`/`then`/`else`, and local `$ref`s
//! (`#/$defs/...`, `#/definitions/...`). Unknown keywords are ignored, and so are `pattern`,
//! `patternProperties` and `format`: they need a regex engine, and a model that breaks them is
//! better told so by the tool itself than refused here.
//!
//! Errors carry the JSON pointer of the offending value so the model can fix its call.

use std::fmt;

use serde_json::{Map, Value};

/// At most this many errors are reported for one value: enough for a model to fix its call.
const MAX_ERRORS: usize = 8;
/// `$ref` cycles and absurdly deep values stop here instead of overflowing the stack.
const MAX_DEPTH: usize = 64;

/// One way a value fails its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// JSON pointer of the offending value (`""` for the whole value, `/items/0/name` inside).
    pub path: String,
    pub message: String,
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Validates `value` against `schema`. `Value::Null` as the schema accepts everything (a tool
/// declared without parameters).
pub fn validate(schema: &Value, value: &Value) -> Result<(), Vec<SchemaError>> {
    let validator = Validator { root: schema };
    let mut errors = Vec::new();
    validator.check(schema, value, "", 0, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        errors.truncate(MAX_ERRORS);
        Err(errors)
    }
}

/// The errors of [`validate`] as one line: `"/query: expected string, got number; ..."`.
pub fn describe(errors: &[SchemaError]) -> String {
    let mut out = String::new();
    for (i, error) in errors.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&error.to_string());
    }
    out
}

struct Validator<'s> {
    root: &'s Value,
}

fn push(errors: &mut Vec<SchemaError>, path: &str, message: String) {
    if errors.len() < MAX_ERRORS {
        errors.push(SchemaError {
            path: path.to_owned(),
            message,
        });
    }
}

/// `path` extended by one reference token, escaped as RFC 6901 says.
fn child(path: &str, token: &str) -> String {
    let mut out = String::with_capacity(path.len() + token.len() + 1);
    out.push_str(path);
    out.push('/');
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if is_integer(n) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// JSON Schema counts `1.0` as an integer.
fn is_integer(n: &serde_json::Number) -> bool {
    n.is_i64()
        || n.is_u64()
        || n.as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
}

fn has_type(value: &Value, name: &str) -> bool {
    match (name, value) {
        ("null", Value::Null)
        | ("boolean", Value::Bool(_))
        | ("number", Value::Number(_))
        | ("string", Value::String(_))
        | ("array", Value::Array(_))
        | ("object", Value::Object(_)) => true,
        ("integer", Value::Number(n)) => is_integer(n),
        // An unknown type name is the schema's mistake, not the model's.
        ("null" | "boolean" | "number" | "integer" | "string" | "array" | "object", _) => false,
        _ => true,
    }
}

/// Equality as JSON Schema means it: `1` equals `1.0`.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}

/// A JSON value for an error message, shortened so a huge `enum` does not flood the model.
fn show(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > 200 {
        let mut cut = 200;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

fn show_number(n: f64) -> String {
    // `5` rather than `5.0` for whole bounds.
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

impl Validator<'_> {
    fn check(
        &self,
        schema: &Value,
        value: &Value,
        path: &str,
        depth: usize,
        errors: &mut Vec<SchemaError>,
    ) {
        if depth > MAX_DEPTH {
            push(errors, path, "schema or value nested too deeply".into());
            return;
        }
        let schema = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                push(errors, path, "no value is allowed here".into());
                return;
            }
            Value::Object(schema) => schema,
            // Not a schema (null, a number...): accept, as a tool without parameters does.
            _ => return,
        };

        if let Some(Value::String(reference)) = schema.get("$ref") {
            if let Some(target) = self.resolve(reference) {
                self.check(target, value, path, depth + 1, errors);
            }
        }

        if let Some(expected) = schema.get("type") {
            let names: Vec<&str> = match expected {
                Value::String(name) => vec![name.as_str()],
                Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !names.is_empty() && !names.iter().any(|name| has_type(value, name)) {
                let message = if names.len() == 1 {
                    format!("expected {}, got {}", names[0], type_name(value))
                } else {
                    format!("expected {}, got {}", names.join(" or "), type_name(value))
                };
                push(errors, path, message);
                // The other keywords would only repeat the mismatch.
                return;
            }
        }

        if let Some(Value::Array(allowed)) = schema.get("enum") {
            if !allowed.iter().any(|a| json_eq(a, value)) {
                let list = Value::Array(allowed.clone());
                push(errors, path, format!("expected one of {}", show(&list)));
            }
        }
        if let Some(constant) = schema.get("const") {
            if !json_eq(constant, value) {
                push(errors, path, format!("expected {}", show(constant)));
            }
        }

        match value {
            Value::Number(n) => {
                if let Some(n) = n.as_f64() {
                    self.check_number(schema, n, path, errors);
                }
            }
            Value::String(s) => check_string(schema, s, path, errors),
            Value::Array(items) => self.check_array(schema, items, path, depth, errors),
            Value::Object(object) => self.check_object(schema, object, path, depth, errors),
            Value::Null | Value::Bool(_) => {}
        }

        self.check_combinators(schema, value, path, depth, errors);
    }

    /// A local reference (`#`, `#/$defs/Name`); anything else resolves to nothing and is
    /// ignored.
    fn resolve(&self, reference: &str) -> Option<&Value> {
        let pointer = reference.strip_prefix('#')?;
        if pointer.is_empty() {
            return Some(self.root);
        }
        self.root.pointer(pointer)
    }

    fn check_number(
        &self,
        schema: &Map<String, Value>,
        n: f64,
        path: &str,
        errors: &mut Vec<SchemaError>,
    ) {
        let number = |key: &str| schema.get(key).and_then(Value::as_f64);
        // Draft 4 spells exclusive bounds as booleans beside minimum/maximum.
        let draft4_exclusive = |key: &str| schema.get(key).and_then(Value::as_bool) == Some(true);

        if let Some(min) = number("minimum") {
            if draft4_exclusive("exclusiveMinimum") {
                if n <= min {
                    push(errors, path, format!("must be > {}", show_number(min)));
                }
            } else if n < min {
                push(errors, path, format!("must be >= {}", show_number(min)));
            }
        }
        if let Some(max) = number("maximum") {
            if draft4_exclusive("exclusiveMaximum") {
                if n >= max {
                    push(errors, path, format!("must be < {}", show_number(max)));
                }
            } else if n > max {
                push(errors, path, format!("must be <= {}", show_number(max)));
            }
        }
        if let Some(min) = number("exclusiveMinimum") {
            if n <= min {
                push(errors, path, format!("must be > {}", show_number(min)));
            }
        }
        if let Some(max) = number("exclusiveMaximum") {
            if n >= max {
                push(errors, path, format!("must be < {}", show_number(max)));
            }
        }
        if let Some(step) = number("multipleOf") {
            if step > 0.0 {
                let quotient = n / step;
                if (quotient - quotient.round()).abs() > 1e-9 {
                    push(
                        errors,
                        path,
                        format!("must be a multiple of {}", show_number(step)),
                    );
                }
            }
        }
    }

    fn check_array(
        &self,
        schema: &Map<String, Value>,
        items: &[Value],
        path: &str,
        depth: usize,
        errors: &mut Vec<SchemaError>,
    ) {
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            if (items.len() as u64) < min {
                push(
                    errors,
                    path,
                    format!("expected at least {min} items, got {}", items.len()),
                );
            }
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            if items.len() as u64 > max {
                push(
                    errors,
                    path,
                    format!("expected at most {max} items, got {}", items.len()),
                );
            }
        }
        if schema.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
            'outer: for (i, a) in items.iter().enumerate() {
                for (j, b) in items.iter().enumerate().skip(i + 1) {
                    if json_eq(a, b) {
                        push(
                            errors,
                            path,
                            format!("items {i} and {j} are equal; items must be unique"),
                        );
                        break 'outer;
                    }
                }
            }
        }

        // A tuple: `prefixItems` (2020-12) or `items` as an array (older drafts); then `items`
        // (2020-12) or `additionalItems` for the rest.
        let (tuple, rest) = match (schema.get("prefixItems"), schema.get("items")) {
            (Some(Value::Array(tuple)), rest) => (tuple.as_slice(), rest),
            (_, Some(Value::Array(tuple))) => (tuple.as_slice(), schema.get("additionalItems")),
            (_, rest) => (&[][..], rest),
        };
        for (i, item) in items.iter().enumerate() {
            let item_schema = match tuple.get(i) {
                Some(s) => s,
                None => match rest {
                    Some(s) => s,
                    None => continue,
                },
            };
            self.check(
                item_schema,
                item,
                &child(path, &i.to_string()),
                depth + 1,
                errors,
            );
            if errors.len() >= MAX_ERRORS {
                return;
            }
        }
    }

    fn check_object(
        &self,
        schema: &Map<String, Value>,
        object: &Map<String, Value>,
        path: &str,
        depth: usize,
        errors: &mut Vec<SchemaError>,
    ) {
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    push(
                        errors,
                        &child(path, name),
                        "required property is missing".into(),
                    );
                }
            }
        }
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64) {
            if (object.len() as u64) < min {
                push(
                    errors,
                    path,
                    format!("expected at least {min} properties, got {}", object.len()),
                );
            }
        }
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64) {
            if object.len() as u64 > max {
                push(
                    errors,
                    path,
                    format!("expected at most {max} properties, got {}", object.len()),
                );
            }
        }

        let properties = schema.get("properties").and_then(Value::as_object);
        // Without a regex engine we cannot tell which names `patternProperties` covers, so
        // with it present `additionalProperties` is not enforced.
        let additional = if schema.contains_key("patternProperties") {
            None
        } else {
            schema.get("additionalProperties")
        };
        for (name, item) in object {
            let item_path = child(path, name);
            match properties.and_then(|p| p.get(name)) {
                Some(property) => self.check(property, item, &item_path, depth + 1, errors),
                None => match additional {
                    Some(Value::Bool(false)) => {
                        let allowed = properties
                            .map(|p| p.keys().map(String::as_str).collect::<Vec<_>>().join(", "))
                            .unwrap_or_default();
                        let message = if allowed.is_empty() {
                            "unexpected property (no properties are allowed)".to_owned()
                        } else {
                            format!("unexpected property (allowed: {allowed})")
                        };
                        push(errors, &item_path, message);
                    }
                    Some(additional) => self.check(additional, item, &item_path, depth + 1, errors),
                    None => {}
                },
            }
            if errors.len() >= MAX_ERRORS {
                return;
            }
        }
    }

    fn check_combinators(
        &self,
        schema: &Map<String, Value>,
        value: &Value,
        path: &str,
        depth: usize,
        errors: &mut Vec<SchemaError>,
    ) {
        if let Some(Value::Array(all)) = schema.get("allOf") {
            for branch in all {
                self.check(branch, value, path, depth + 1, errors);
            }
        }
        if let Some(Value::Array(any)) = schema.get("anyOf") {
            let failures = self.branch_failures(any, value, path, depth);
            if failures.iter().all(|f| !f.is_empty()) && !any.is_empty() {
                push(errors, path, no_alternative("anyOf", &failures));
            }
        }
        if let Some(Value::Array(one)) = schema.get("oneOf") {
            let failures = self.branch_failures(one, value, path, depth);
            let matched: Vec<usize> = failures
                .iter()
                .enumerate()
                .filter(|(_, f)| f.is_empty())
                .map(|(i, _)| i)
                .collect();
            match matched.as_slice() {
                [] if !one.is_empty() => push(errors, path, no_alternative("oneOf", &failures)),
                [] | [_] => {}
                [first, second, ..] => push(
                    errors,
                    path,
                    format!(
                        "matches more than one alternative of oneOf (#{} and #{})",
                        first + 1,
                        second + 1
                    ),
                ),
            }
        }
        if let Some(not) = schema.get("not") {
            let mut inner = Vec::new();
            self.check(not, value, path, depth + 1, &mut inner);
            if inner.is_empty() {
                push(errors, path, "must not match the schema in `not`".into());
            }
        }
        if let Some(condition) = schema.get("if") {
            let mut inner = Vec::new();
            self.check(condition, value, path, depth + 1, &mut inner);
            let branch = if inner.is_empty() {
                schema.get("then")
            } else {
                schema.get("else")
            };
            if let Some(branch) = branch {
                self.check(branch, value, path, depth + 1, errors);
            }
        }
    }

    fn branch_failures(
        &self,
        branches: &[Value],
        value: &Value,
        path: &str,
        depth: usize,
    ) -> Vec<Vec<SchemaError>> {
        branches
            .iter()
            .map(|branch| {
                let mut inner = Vec::new();
                self.check(branch, value, path, depth + 1, &mut inner);
                inner
            })
            .collect()
    }
}

/// "matches no alternative of anyOf: (1) expected string, got number; (2) ..." with the first
/// error of each of the first few alternatives, which is usually what the model needs.
fn no_alternative(keyword: &str, failures: &[Vec<SchemaError>]) -> String {
    let mut message = format!("matches no alternative of {keyword}:");
    for (i, failure) in failures.iter().enumerate().take(4) {
        if let Some(first) = failure.first() {
            if i > 0 {
                message.push(';');
            }
            message.push_str(&format!(" ({}) {first}", i + 1));
        }
    }
    if failures.len() > 4 {
        message.push_str("; ...");
    }
    message
}

fn check_string(schema: &Map<String, Value>, s: &str, path: &str, errors: &mut Vec<SchemaError>) {
    let min = schema.get("minLength").and_then(Value::as_u64);
    let max = schema.get("maxLength").and_then(Value::as_u64);
    if min.is_none() && max.is_none() {
        return;
    }
    // Lengths count code points, as the spec says, not bytes.
    let len = s.chars().count() as u64;
    if let Some(min) = min {
        if len < min {
            push(
                errors,
                path,
                format!("expected at least {min} characters, got {len}"),
            );
        }
    }
    if let Some(max) = max {
        if len > max {
            push(
                errors,
                path,
                format!("expected at most {max} characters, got {len}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn errors(schema: Value, value: Value) -> Vec<String> {
        match validate(&schema, &value) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    /// For objects, whose key order depends on serde_json's `preserve_order` feature.
    fn sorted(mut errors: Vec<String>) -> Vec<String> {
        errors.sort();
        errors
    }

    #[test]
    fn types_and_integer_vs_number() {
        assert!(errors(json!({"type": "string"}), json!("x")).is_empty());
        assert_eq!(
            errors(json!({"type": "string"}), json!(3)),
            ["expected string, got integer"]
        );
        assert!(errors(json!({"type": "integer"}), json!(3)).is_empty());
        assert!(errors(json!({"type": "integer"}), json!(3.0)).is_empty());
        assert_eq!(
            errors(json!({"type": "integer"}), json!(3.5)),
            ["expected integer, got number"]
        );
        assert!(errors(json!({"type": "number"}), json!(3)).is_empty());
        assert!(errors(json!({"type": ["string", "null"]}), json!(null)).is_empty());
        assert_eq!(
            errors(json!({"type": ["string", "null"]}), json!(true)),
            ["expected string or null, got boolean"]
        );
        // Unknown type names are the schema's problem.
        assert!(errors(json!({"type": "strnig"}), json!(1)).is_empty());
    }

    #[test]
    fn null_and_boolean_schemas() {
        assert!(errors(Value::Null, json!({"anything": 1})).is_empty());
        assert!(errors(json!(true), json!(1)).is_empty());
        assert_eq!(errors(json!(false), json!(1)), ["no value is allowed here"]);
        assert!(errors(json!({}), json!([1, "a"])).is_empty());
    }

    #[test]
    fn objects_report_pointer_paths() {
        let schema = json!({
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "filters": {
                    "type": "object",
                    "properties": {"a/b": {"type": "integer"}},
                    "additionalProperties": false
                }
            },
            "required": ["query", "limit"]
        });
        assert_eq!(
            sorted(errors(
                schema.clone(),
                json!({"query": 1, "filters": {"a/b": "x", "c": 1}})
            )),
            [
                "/filters/a~1b: expected integer, got string",
                "/filters/c: unexpected property (allowed: a/b)",
                "/limit: required property is missing",
                "/query: expected string, got integer",
            ]
        );
        assert_eq!(
            errors(schema, json!("text")),
            ["expected object, got string"]
        );
    }

    #[test]
    fn additional_properties_as_schema() {
        let schema = json!({
            "type": "object",
            "properties": {"a": {}},
            "additionalProperties": {"type": "number"},
            "minProperties": 1,
            "maxProperties": 2
        });
        assert!(errors(schema.clone(), json!({"a": "x", "b": 2})).is_empty());
        assert_eq!(
            errors(schema.clone(), json!({"b": "2"})),
            ["/b: expected number, got string"]
        );
        assert_eq!(
            errors(schema.clone(), json!({})),
            ["expected at least 1 properties, got 0"]
        );
        assert_eq!(
            errors(schema, json!({"a": 1, "b": 2, "c": 3})),
            ["expected at most 2 properties, got 3"]
        );
        assert_eq!(
            errors(json!({"additionalProperties": false}), json!({"x": 1})),
            ["/x: unexpected property (no properties are allowed)"]
        );
    }

    #[test]
    fn arrays() {
        let schema = json!({
            "type": "array",
            "items": {"type": "string", "minLength": 2},
            "minItems": 1,
            "maxItems": 3,
            "uniqueItems": true
        });
        assert!(errors(schema.clone(), json!(["ab", "cd"])).is_empty());
        assert_eq!(
            errors(schema.clone(), json!([])),
            ["expected at least 1 items, got 0"]
        );
        assert_eq!(
            errors(schema.clone(), json!(["ab", "c", 3, "ab"])),
            [
                "expected at most 3 items, got 4",
                "items 0 and 3 are equal; items must be unique",
                "/1: expected at least 2 characters, got 1",
                "/2: expected string, got integer",
            ]
        );
        let tuple =
            json!({"prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false});
        assert!(errors(tuple.clone(), json!(["a", 1])).is_empty());
        assert_eq!(
            errors(tuple, json!([1, 1, 1])),
            [
                "/0: expected string, got integer",
                "/2: no value is allowed here"
            ]
        );
        let old_tuple = json!({"items": [{"type": "string"}], "additionalItems": {"type": "null"}});
        assert_eq!(
            errors(old_tuple, json!(["a", 1])),
            ["/1: expected null, got integer"]
        );
    }

    #[test]
    fn enum_and_const() {
        let schema = json!({"enum": ["celsius", "fahrenheit", 1]});
        assert!(errors(schema.clone(), json!("celsius")).is_empty());
        assert!(errors(schema.clone(), json!(1.0)).is_empty());
        assert_eq!(
            errors(schema, json!("kelvin")),
            [r#"expected one of ["celsius","fahrenheit",1]"#]
        );
        assert!(errors(json!({"const": {"a": [1]}}), json!({"a": [1.0]})).is_empty());
        assert_eq!(
            errors(json!({"const": "x"}), json!("y")),
            [r#"expected "x""#]
        );
    }

    #[test]
    fn numeric_bounds() {
        let schema = json!({"minimum": 1, "maximum": 10, "multipleOf": 0.5});
        assert!(errors(schema.clone(), json!(1)).is_empty());
        assert!(errors(schema.clone(), json!(9.5)).is_empty());
        assert_eq!(errors(schema.clone(), json!(0)), ["must be >= 1"]);
        assert_eq!(errors(schema.clone(), json!(11)), ["must be <= 10"]);
        assert_eq!(errors(schema, json!(2.25)), ["must be a multiple of 0.5"]);
        let exclusive = json!({"exclusiveMinimum": 0, "exclusiveMaximum": 1});
        assert_eq!(errors(exclusive.clone(), json!(0)), ["must be > 0"]);
        assert_eq!(errors(exclusive.clone(), json!(1)), ["must be < 1"]);
        assert!(errors(exclusive, json!(0.5)).is_empty());
        let draft4 =
            json!({"minimum": 0, "exclusiveMinimum": true, "maximum": 1, "exclusiveMaximum": true});
        assert_eq!(errors(draft4.clone(), json!(0)), ["must be > 0"]);
        assert_eq!(errors(draft4, json!(1)), ["must be < 1"]);
    }

    #[test]
    fn string_lengths_count_characters() {
        let schema = json!({"type": "string", "minLength": 2, "maxLength": 3});
        assert!(errors(schema.clone(), json!("été")).is_empty());
        assert_eq!(
            errors(schema.clone(), json!("é")),
            ["expected at least 2 characters, got 1"]
        );
        assert_eq!(
            errors(schema, json!("abcd")),
            ["expected at most 3 characters, got 4"]
        );
        // `pattern` and `format` are not enforced.
        assert!(errors(json!({"pattern": "^a$", "format": "email"}), json!("b")).is_empty());
    }

    #[test]
    fn combinators() {
        let any = json!({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]});
        assert!(errors(any.clone(), json!("a")).is_empty());
        assert!(errors(any.clone(), json!(3)).is_empty());
        assert_eq!(
            errors(any, json!(-1)),
            ["matches no alternative of anyOf: (1) expected string, got integer; (2) must be >= 0"]
        );

        let one = json!({"oneOf": [{"type": "integer"}, {"type": "number"}]});
        assert!(errors(one.clone(), json!(1.5)).is_empty());
        assert_eq!(
            errors(one, json!(1)),
            ["matches more than one alternative of oneOf (#1 and #2)"]
        );

        let all = json!({"allOf": [{"type": "object", "required": ["a"]}, {"required": ["b"]}]});
        assert_eq!(
            errors(all, json!({})),
            [
                "/a: required property is missing",
                "/b: required property is missing"
            ]
        );

        assert_eq!(
            errors(json!({"not": {"type": "null"}}), json!(null)),
            ["must not match the schema in `not`"]
        );

        let conditional = json!({
            "if": {"properties": {"unit": {"const": "f"}}},
            "then": {"properties": {"t": {"maximum": 200}}},
            "else": {"properties": {"t": {"maximum": 100}}}
        });
        assert!(errors(conditional.clone(), json!({"unit": "f", "t": 150})).is_empty());
        assert_eq!(
            errors(conditional, json!({"unit": "c", "t": 150})),
            ["/t: must be <= 100"]
        );
    }

    #[test]
    fn local_refs_and_cycles() {
        let schema = json!({
            "type": "object",
            "properties": {"node": {"$ref": "#/$defs/Node"}},
            "$defs": {
                "Node": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}
                    },
                    "required": ["name"]
                }
            }
        });
        assert!(errors(
            schema.clone(),
            json!({"node": {"name": "a", "children": [{"name": "b"}]}})
        )
        .is_empty());
        assert_eq!(
            errors(
                schema,
                json!({"node": {"name": "a", "children": [{"name": 2}]}})
            ),
            ["/node/children/0/name: expected string, got integer"]
        );
        // A reference to itself stops at the depth limit instead of overflowing the stack.
        let cycle = json!({"$ref": "#"});
        assert_eq!(
            errors(cycle, json!(1)),
            ["schema or value nested too deeply"]
        );
        // Unresolvable references are ignored.
        assert!(errors(json!({"$ref": "https://example.com/s.json"}), json!(1)).is_empty());
    }

    #[test]
    fn error_count_is_capped() {
        let schema = json!({"type": "array", "items": {"type": "string"}});
        let value = Value::Array((0..100).map(|i| json!(i)).collect());
        assert_eq!(errors(schema, value).len(), MAX_ERRORS);
    }
}
