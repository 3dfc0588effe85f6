//! The image every container target runs: a multi-stage `Dockerfile` (the workspace's pinned
//! Rust toolchain builds `agentd` with cached dependencies; a distroless runtime runs it as a
//! non-root user) and its ignore file, both at the root of the output directory.
//!
//! The decision to know: **the image does not contain the config.** The Dockerfile is built
//! from the repository root (the whole workspace is the build context) and knows nothing of
//! where it was rendered or of the config's text, so one image serves every target, region
//! and config edit. Each target puts the config at [`CONFIG_PATH`] itself: a Fly `[[files]]`
//! entry, a Secret Manager volume on Cloud Run, a ConfigMap, a Compose bind mount, a file on
//! the VM.

use crate::{Ctx, File};

/// The workspace's `rust-toolchain.toml`, read when agentd is compiled: the image builds with
/// exactly the toolchain the source was tested with.
const RUST_TOOLCHAIN_FILE: &str = include_str!("../../../rust-toolchain.toml");

/// The runtime base: glibc, libgcc (agentd unwinds on panic), CA certificates and a `nonroot`
/// user; no shell, no package manager. Debian 12, like the builder, so glibc matches.
pub(crate) const RUNTIME_IMAGE: &str = "gcr.io/distroless/cc-debian12:nonroot";
/// The builder's Debian release (the `rust:<version>-slim-<release>` tag).
const BUILDER_DEBIAN: &str = "bookworm";
/// distroless's `nonroot` user and group, numeric so platforms that mount volumes for the
/// image's user (Fly.io does) need no `/etc/passwd` lookup.
pub(crate) const RUN_AS: u32 = 65532;
/// Where the binary is installed in the image.
pub(crate) const BINARY: &str = "/usr/local/bin/agentd";
/// Where every target puts the config (`AGENTD_CONFIG` points here).
pub(crate) const CONFIG_PATH: &str = "/etc/agentd/agentd.toml";
/// Embedded state (SQLite) and the working directory.
pub(crate) const DATA_DIR: &str = "/data";

/// The channel of `rust-toolchain.toml` (`1.95.0`).
pub(crate) fn rust_version() -> &'static str {
    RUST_TOOLCHAIN_FILE
        .lines()
        .filter_map(|line| line.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"'))
        .next()
        .unwrap_or("stable")
}

/// `Dockerfile`, `.dockerignore` and `Dockerfile.dockerignore` (the same rules: BuildKit reads
/// the one beside the Dockerfile, `fly deploy` the one its `[build] ignorefile` names).
pub(crate) fn render(ctx: &Ctx<'_>) -> Vec<File> {
    let ignore = dockerignore();
    vec![
        File::new("Dockerfile", dockerfile(ctx)),
        File::new(".dockerignore", ignore.clone()),
        File::new("Dockerfile.dockerignore", ignore),
    ]
}

fn dockerfile(ctx: &Ctx<'_>) -> String {
    let rust = rust_version();
    let port = ctx.port;
    let sqlite = !ctx.postgres();
    let volume = if sqlite {
        format!(
            "# SQLite: the database lives here; mount a volume (the target's manifests do).\nVOLUME [\"{DATA_DIR}\"]\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"# syntax=docker/dockerfile:1
# The agentd image, written by `agentd deploy render` (edit the config and re-render, not this).
#
# Build it from the repository root, which is the build context (BuildKit: Docker 23 or later):
#
#   docker build -f deploy/Dockerfile -t {image} .
#
# (`-f` is this file's path if you rendered somewhere else than ./deploy.) No config is baked
# in: every target mounts it at {CONFIG_PATH}; for a local run:
#   docker run -p {port}:{port} -v "$PWD/deploy/<target>/agentd.toml:{CONFIG_PATH}:ro" {image}

# Build: the toolchain of rust-toolchain.toml, dependencies and build output kept in BuildKit
# cache mounts, so a rebuild after a source change recompiles only the changed crates.
FROM rust:{rust}-slim-{BUILDER_DEBIAN} AS builder
# The image's toolchain is the pinned one: rustup must not fetch rust-toolchain.toml's extra
# components (rustfmt, clippy) for a release build.
ENV RUSTUP_TOOLCHAIN={rust} \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p agentd \
    && install -D -m 0755 target/release/agentd /out/agentd \
    && mkdir -p /out/data

# Run: distroless (glibc, libgcc, CA certificates; no shell), as the non-root user {RUN_AS}.
FROM {RUNTIME_IMAGE}
COPY --from=builder /out/agentd {BINARY}
COPY --from=builder --chown={RUN_AS}:{RUN_AS} /out/data {DATA_DIR}
# Every role serves HTTP (/healthz, /readyz, /metrics; the API on the api role) on this port.
ENV AGENTD_CONFIG={CONFIG_PATH} \
    AGENTD_LISTEN=0.0.0.0:{port} \
    AGENTD_DATA_DIR={DATA_DIR} \
    AGENTD_LOG_FORMAT=json
USER {RUN_AS}:{RUN_AS}
WORKDIR {DATA_DIR}
{volume}EXPOSE {port}
# No curl in distroless: the binary checks itself (GET /healthz on AGENTD_LISTEN's port).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["{BINARY}", "healthcheck"]
# SIGTERM drains in-flight requests and runs for server.shutdown_grace ({drain} s here);
# give `docker stop` at least that: docker stop -t {stop}.
STOPSIGNAL SIGTERM
ENTRYPOINT ["{BINARY}"]
CMD ["serve"]
"#,
        image = ctx.image,
        drain = ctx.drain_seconds,
        stop = ctx.drain_seconds + 5,
    )
}

/// An allow-list: the build needs the workspace manifests, the lock file, the toolchain file
/// and the crates, nothing else (no `target/`, `.git`, virtualenvs, local data or secrets).
fn dockerignore() -> String {
    "# Build context: the repository root. Only what `cargo build -p agentd` reads goes in;\n\
     # everything else (target/, .git, .venv*, data/, node_modules, .env files, deploy/) stays out.\n\
     # Written by `agentd deploy render`.\n\
     *\n\
     !Cargo.toml\n\
     !Cargo.lock\n\
     !rust-toolchain.toml\n\
     !crates/\n\
     crates/**/target\n\
     crates/**/.env\n\
     crates/**/*.db\n"
        .to_owned()
}

/// The config shipped beside a target's manifests (the file the user rendered from, as
/// written: secrets stay `${VAR}` references).
pub(crate) fn config_file(dir: &str, ctx: &Ctx<'_>) -> File {
    File::new(format!("{dir}/agentd.toml"), ctx.config_text.clone())
}

/// Loading configs for the renderers' tests, with secret values that must never appear in a
/// rendered file.
#[cfg(test)]
pub(crate) mod test_support {
    use agentd_config::{Config, Overrides};

    use crate::{Ctx, File, Options, Target};

    /// Every secret variable a test config may use has a value containing this.
    pub(crate) const LEAK: &str = "LEAKED-SECRET";

    /// `text` loaded as the renderer would for `target`, but with real-looking secrets.
    pub(crate) fn load_for(text: &str, target: Target) -> Config {
        let stand_ins = crate::render_env(Some(text), target);
        let env = |name: &str| -> Option<String> {
            Some(match name {
                "DATABASE_URL" | "REPLICA_URL" => {
                    format!("postgres://agentd:{LEAK}@db.internal:5432/agentd")
                }
                "REDIS_URL" => format!("redis://:{LEAK}@redis.internal:6379"),
                "NATS_URL" => format!("nats://user:{LEAK}@nats.internal:4222"),
                "OPENAI_API_KEY" | "ANTHROPIC_API_KEY" | "AGENTD_ADMIN_KEY" => {
                    format!("sk-{LEAK}-0123456789")
                }
                other => return stand_ins.get(other).cloned(),
            })
        };
        Config::from_str(
            text,
            std::path::Path::new("agentd.toml"),
            &env,
            &Overrides::default(),
        )
        .unwrap_or_else(|e| panic!("test config does not load:\n{e}"))
    }

    pub(crate) fn load(text: &str) -> Config {
        load_for(text, Target::K8s)
    }

    /// The context with `text` as the shipped config.
    pub(crate) fn ctx_with<'a>(config: &'a Config, text: &str, regions: &[&str]) -> Ctx<'a> {
        let options = Options {
            regions: regions.iter().map(|r| (*r).to_owned()).collect(),
            config_text: Some(text.to_owned()),
        };
        crate::context(config, &options).expect("context")
    }

    pub(crate) fn ctx_of(config: &Config) -> Ctx<'_> {
        crate::context(config, &Options::default()).expect("context")
    }

    /// Panics if a rendered file holds a secret's value.
    pub(crate) fn assert_no_secret(files: &[File]) {
        for file in files {
            assert!(
                !file.contents.contains(LEAK),
                "{} contains a secret value",
                file.path.display()
            );
        }
    }

    /// The file at `path`.
    pub(crate) fn file<'f>(files: &'f [File], path: &str) -> &'f str {
        &files
            .iter()
            .find(|f| f.path.to_str() == Some(path))
            .unwrap_or_else(|| {
                panic!(
                    "no {path} among {:?}",
                    files
                        .iter()
                        .map(|f| f.path.display().to_string())
                        .collect::<Vec<_>>()
                )
            })
            .contents
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{assert_no_secret, ctx_of, load};
    use super::*;

    #[test]
    fn toolchain_version_comes_from_the_workspace_file() {
        let v = rust_version();
        assert!(
            v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok()),
            "{v}"
        );
    }

    #[test]
    fn dockerfile_is_multi_stage_non_root_with_a_healthcheck() {
        let config = load("[server]\nlisten = \"127.0.0.1:9090\"\n");
        let ctx = ctx_of(&config);
        let files = render(&ctx);
        let text = &files[0].contents;
        assert_eq!(files[0].path.to_str(), Some("Dockerfile"));
        assert!(text.contains(&format!(
            "FROM rust:{}-slim-bookworm AS builder",
            rust_version()
        )));
        assert!(text.contains("cargo build --release --locked -p agentd"));
        assert!(text.contains(&format!("FROM {RUNTIME_IMAGE}\n")));
        assert!(text.contains("USER 65532:65532"));
        assert!(text.contains("EXPOSE 9090"));
        assert!(text.contains("AGENTD_LISTEN=0.0.0.0:9090"));
        assert!(text.contains("HEALTHCHECK"));
        assert!(text.contains("CMD [\"/usr/local/bin/agentd\", \"healthcheck\"]"));
        // SQLite: the data directory is a volume.
        assert!(text.contains("VOLUME [\"/data\"]"));
        assert_eq!(files[1].contents, files[2].contents);
        assert!(files[1].contents.starts_with("# Build context"));
        assert!(files[1].contents.contains("\n*\n!Cargo.toml\n"));
    }

    #[test]
    fn postgres_images_declare_no_volume() {
        let config = load("[store]\nkind = \"postgres\"\nurl = \"${DATABASE_URL}\"\n");
        let ctx = ctx_of(&config);
        let files = render(&ctx);
        assert!(!files[0].contents.contains("VOLUME"));
        assert_no_secret(&files);
    }
}
