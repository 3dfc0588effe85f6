//! The environment `agentd deploy render` loads the config with: stand-ins for the variables
//! the file references, never the shell's environment.
//!
//! Rendering needs the config's structure (store, queue, pools, regions), not its secrets: the
//! manifests reference `${VAR}`s by name and ship the file as written. So a developer renders
//! without `OPENAI_API_KEY` or the production `DATABASE_URL` in their shell, and nothing from
//! that shell leaks in either (`AGENTD_DATABASE_URL` there would otherwise turn a SQLite config
//! into a PostgreSQL deployment). Each unset `${VAR}` gets a value of the shape its key needs so
//! validation passes: a `postgres://` URL for `store.url`, a `redis://` or `nats://` URL for
//! `queue.url`, … The platform's own variables are emulated too: `FLY_REGION` (the primary, so
//! a multi-region file validates as it will on each instance) and, for Fly.io, `FLY_APP_NAME`
//! (so `regions.routing` defaults to `fly-replay` there, as it will at run time).

use std::collections::BTreeMap;

use toml_edit::{DocumentMut, Item, Value};

use crate::Target;

/// Stand-in for secrets and anything without a more specific shape (16+ characters, so it
/// passes `auth.admin_key`'s length check).
pub const SECRET_STAND_IN: &str = "deploy-render-stand-in-secret";
const POSTGRES_STAND_IN: &str = "postgres://stand-in:stand-in@stand-in.invalid:5432/agentd";
const REDIS_STAND_IN: &str = "redis://stand-in.invalid:6379";
const NATS_STAND_IN: &str = "nats://stand-in.invalid:4222";
const URL_STAND_IN: &str = "https://stand-in.invalid";
/// For a `${VAR}` inside a longer string (`postgres://u:${PW}@host/db`): fits any URL part.
const FRAGMENT_STAND_IN: &str = "stand-in";

/// The variables to load `config_text` with for `target` (an empty map for the built-in
/// defaults). A file that is not TOML gets no stand-ins: loading it reports the syntax error.
pub fn render_env(config_text: Option<&str>, target: Target) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let Some(text) = config_text else {
        return env;
    };
    let Ok(doc) = text.parse::<DocumentMut>() else {
        return env;
    };
    let queue_kind = doc
        .get("queue")
        .and_then(|q| q.get("kind"))
        .and_then(Item::as_str)
        .unwrap_or("store")
        .to_owned();
    let region_list: Vec<String> = doc
        .get("regions")
        .and_then(|r| r.get("list"))
        .and_then(Item::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| s.trim().to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    let primary = doc
        .get("regions")
        .and_then(|r| r.get("primary"))
        .and_then(Item::as_str)
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .or_else(|| region_list.first().cloned());

    let mut path = Vec::new();
    walk_item(doc.as_item(), &mut path, &mut |path, text| {
        for (name, whole) in references(text) {
            if env.contains_key(&name) {
                continue;
            }
            let value = if whole {
                stand_in_for(path, &queue_kind, primary.as_deref())
            } else {
                FRAGMENT_STAND_IN.to_owned()
            };
            env.insert(name, value);
        }
    });

    let has_region = doc
        .get("server")
        .and_then(|s| s.get("region"))
        .and_then(Item::as_str)
        .is_some_and(|s| !s.trim().is_empty());
    if let (false, Some(primary)) = (has_region, &primary) {
        env.entry("FLY_REGION".to_owned())
            .or_insert_with(|| primary.clone());
    }
    if target == Target::Fly {
        let app = doc
            .get("deploy")
            .and_then(|d| d.get("app"))
            .and_then(Item::as_str)
            .unwrap_or("agentd")
            .to_owned();
        env.entry("FLY_APP_NAME".to_owned()).or_insert(app);
    }
    env
}

/// The variable a key's value is, when the value is exactly one `${VAR}` (`store.url =
/// "${DATABASE_URL}"` → `DATABASE_URL`): the name a platform's own secret must have.
pub(crate) fn whole_reference(config_text: &str, path: &[&str]) -> Option<String> {
    let doc = config_text.parse::<DocumentMut>().ok()?;
    let mut item = doc.as_item();
    for key in path {
        item = item.get(key)?;
    }
    let value = item.as_str()?.trim();
    let name = value.strip_prefix("${")?.strip_suffix('}')?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| name.to_owned())
}

/// The stand-in for a value that is exactly one `${VAR}`, by where it sits.
fn stand_in_for(path: &[String], queue_kind: &str, primary: Option<&str>) -> String {
    let keys: Vec<&str> = path.iter().map(String::as_str).collect();
    match keys.as_slice() {
        ["store", "url" | "replica_url"] | ["regions", "store_urls", _] => {
            POSTGRES_STAND_IN.to_owned()
        }
        ["queue", "url"] if queue_kind == "nats" => NATS_STAND_IN.to_owned(),
        ["queue", "url"] => REDIS_STAND_IN.to_owned(),
        ["server", "listen"] => "0.0.0.0:8080".to_owned(),
        ["server", "region"] => primary.unwrap_or("cdg").to_owned(),
        ["server", "data_dir"] => "data".to_owned(),
        ["store", "path"] => "agentd.db".to_owned(),
        ["regions", "urls", _] => URL_STAND_IN.to_owned(),
        [.., last] if last.ends_with("url") => URL_STAND_IN.to_owned(),
        _ => SECRET_STAND_IN.to_owned(),
    }
}

/// `${VAR}` references without a default in `text`, each with whether it is the whole value.
fn references(text: &str) -> Vec<(String, bool)> {
    let trimmed = text.trim();
    crate::env_vars_in(text)
        .into_iter()
        .map(|name| {
            let whole = trimmed == format!("${{{name}}}");
            (name, whole)
        })
        .collect()
}

fn walk_item(item: &Item, path: &mut Vec<String>, f: &mut dyn FnMut(&[String], &str)) {
    match item {
        Item::Table(table) => {
            for (key, child) in table.iter() {
                path.push(key.to_owned());
                walk_item(child, path, f);
                path.pop();
            }
        }
        Item::ArrayOfTables(tables) => {
            for table in tables.iter() {
                for (key, child) in table.iter() {
                    path.push(key.to_owned());
                    walk_item(child, path, f);
                    path.pop();
                }
            }
        }
        Item::Value(value) => walk_value(value, path, f),
        Item::None => {}
    }
}

fn walk_value(value: &Value, path: &mut Vec<String>, f: &mut dyn FnMut(&[String], &str)) {
    match value {
        Value::String(s) => f(path, s.value()),
        Value::Array(items) => {
            for item in items.iter() {
                walk_value(item, path, f);
            }
        }
        Value::InlineTable(table) => {
            for (key, child) in table.iter() {
                path.push(key.to_owned());
                walk_value(child, path, f);
                path.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_ins_have_the_shape_of_their_keys() {
        let text = r#"
[server]
listen = "${LISTEN}"
[store]
kind = "postgres"
url = "${DATABASE_URL}"
replica_url = "postgres://reader:${REPLICA_PASSWORD}@replica:5432/agentd"
[auth]
admin_key = "${AGENTD_ADMIN_KEY}"
[queue]
kind = "nats"
url = "${NATS_URL}"
[providers.openai]
kind = "openai"
base_url = "${OPENAI_BASE_URL:-https://api.openai.com/v1}"
api_key = "${OPENAI_API_KEY}"
headers = { "X-Org" = "${OPENAI_ORG}" }
[regions]
list = ["nrt", "cdg"]
primary = "cdg"
"#;
        let env = render_env(Some(text), Target::Fly);
        assert_eq!(env["LISTEN"], "0.0.0.0:8080");
        assert_eq!(env["DATABASE_URL"], POSTGRES_STAND_IN);
        assert_eq!(env["REPLICA_PASSWORD"], FRAGMENT_STAND_IN);
        assert_eq!(env["NATS_URL"], NATS_STAND_IN);
        assert_eq!(env["OPENAI_API_KEY"], SECRET_STAND_IN);
        assert_eq!(env["OPENAI_ORG"], SECRET_STAND_IN);
        assert_eq!(env["AGENTD_ADMIN_KEY"], SECRET_STAND_IN);
        // A default needs no stand-in.
        assert!(!env.contains_key("OPENAI_BASE_URL"));
        // The platform: the primary region, and Fly's app name on Fly only.
        assert_eq!(env["FLY_REGION"], "cdg");
        assert_eq!(env["FLY_APP_NAME"], "agentd");
        assert!(!render_env(Some(text), Target::K8s).contains_key("FLY_APP_NAME"));
    }

    #[test]
    fn whole_references_name_the_variable() {
        let text =
            "[store]\nurl = \"${DATABASE_URL}\"\nreplica_url = \"postgres://u:${PW}@h/db\"\n";
        assert_eq!(
            whole_reference(text, &["store", "url"]).as_deref(),
            Some("DATABASE_URL")
        );
        assert_eq!(whole_reference(text, &["store", "replica_url"]), None);
        assert_eq!(whole_reference(text, &["queue", "url"]), None);
    }

    #[test]
    fn redis_queue_and_no_regions() {
        let env = render_env(
            Some("[queue]\nkind = \"redis\"\nurl = \"${REDIS_URL}\"\n"),
            Target::CloudRun,
        );
        assert_eq!(env["REDIS_URL"], REDIS_STAND_IN);
        assert!(!env.contains_key("FLY_REGION"));
        assert!(render_env(None, Target::Fly).is_empty());
        assert!(render_env(Some("not = [toml"), Target::Fly).is_empty());
    }
}
