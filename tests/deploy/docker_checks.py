"""What hadolint cannot know about the rendered Dockerfile and its ignore files.

Usage: python docker_checks.py RENDERED_DIR REPO_ROOT
"""

import fnmatch
import re
import subprocess
import sys
import tomllib
from pathlib import Path

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL: {message}", file=sys.stderr)


def instructions(text):
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += " " + stripped.rstrip("\\").strip() if current else stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            keyword, _, args = current.partition(" ")
            out.append((keyword.upper(), args.strip()))
            current = ""
    return out


def ignored(path, patterns):
    """Whether `path` is left out by .dockerignore `patterns` (the last matching rule wins, and a
    rule on a directory covers what is under it): moby's semantics for the patterns used."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        if any(fnmatch.fnmatchcase(p, pat) for p in prefixes):
            excluded = not negate
    return excluded


def main(rendered, root):
    dockerfile = (rendered / "Dockerfile").read_text()
    steps = instructions(dockerfile)
    froms = [args for kw, args in steps if kw == "FROM"]
    if len(froms) < 2:
        fail(f"expected a multi-stage build, found {len(froms)} FROM")
    channel = tomllib.loads((root / "rust-toolchain.toml").read_text())["toolchain"]["channel"]
    if not froms or not re.match(rf"rust:{re.escape(channel)}-slim-\w+ AS builder$", froms[0]):
        fail(f"the builder is not rust:{channel}-slim-* (rust-toolchain.toml): {froms[:1]}")
    runs = " ".join(args for kw, args in steps if kw == "RUN")
    if "cargo build --release --locked -p agentd" not in runs:
        fail("no `cargo build --release --locked -p agentd`")
    final = steps[max(i for i, (kw, _) in enumerate(steps) if kw == "FROM"):]
    users = [args for kw, args in final if kw == "USER"]
    if not users or not re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1]):
        fail(f"the runtime stage's USER is not a numeric non-root user: {users}")
    env = " ".join(args for kw, args in final if kw == "ENV")
    listen = re.search(r"AGENTD_LISTEN=0\.0\.0\.0:(\d+)", env)
    exposed = [args for kw, args in final if kw == "EXPOSE"]
    if not listen or exposed != [listen.group(1)]:
        fail(f"EXPOSE {exposed} is not AGENTD_LISTEN's port ({listen and listen.group(1)})")
    entry = [args for kw, args in final if kw == "ENTRYPOINT"]
    binary = re.match(r'\["([^"]+)"', entry[-1]).group(1) if entry else None
    health = [args for kw, args in final if kw == "HEALTHCHECK"]
    if not health or binary is None or f'CMD ["{binary}", "healthcheck"]' not in health[-1]:
        fail(f"no HEALTHCHECK running {binary} healthcheck: {health}")
    if "AGENTD_CONFIG=/etc/agentd/agentd.toml" not in env:
        fail("AGENTD_CONFIG does not point at /etc/agentd/agentd.toml")

    ignore = (rendered / ".dockerignore").read_text()
    if (rendered / "Dockerfile.dockerignore").read_text() != ignore:
        fail(".dockerignore and Dockerfile.dockerignore differ")
    patterns = [
        line.strip()
        for line in ignore.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    tracked = subprocess.run(
        ["git", "-C", str(root), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    needed = ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml"] + [
        f for f in tracked if f.startswith("crates/") and not f.startswith("crates/target")
    ]
    for path in needed:
        if ignored(path, patterns):
            fail(f".dockerignore leaves out {path}, which the build reads")
    for path in ["target/debug/agentd", ".git/HEAD", ".venv/bin/python", ".venv-deploy/bin/python",
                 "data/agentd.db", "tests/deploy/node_modules/x", "crates/agentd/target/x", ".env"]:
        if not ignored(path, patterns):
            fail(f".dockerignore sends {path} to the build")

    print(
        f"Dockerfile: {len(froms)} stages, rust {channel}, user {users[-1] if users else '?'}, "
        f"port {listen and listen.group(1)}; ignore rules keep {len(needed)} files"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
