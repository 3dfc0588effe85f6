"""Helpers shared by the SDK tests (imported as `support`; pytest puts this folder on sys.path)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]

# Public model names configured in the gateway by conftest.py: `mock` is served in-process,
# `gpt-up` through the openai provider kind and `claude-up` through the anthropic one.
CHAT_MODELS = ["mock", "gpt-up", "claude-up"]
EMBEDDING_MODEL = "mock-embedding"

# What the gateway must send upstream: the provider's configured key, never the client's.
UPSTREAM_OPENAI_KEY = "sk-upstream-test"
UPSTREAM_ANTHROPIC_KEY = "sk-ant-upstream-test"


# Generous for a debug build on 2 cores, short enough that a hang fails fast.
SDK_TIMEOUT_S = 15.0
STARTUP_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0
LOG_TAIL_LINES = 150


def agentd_bin() -> Path:
    if os.environ.get("AGENTD_BIN"):
        return Path(os.environ["AGENTD_BIN"]).resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target")
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "debug" / "agentd"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment minus anything that would reconfigure agentd behind our back
    (e.g. AGENTD_DATABASE_URL switches the store to Postgres, provider keys add default models)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AGENTD_") and k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "FLY_REGION")
    }
    env.setdefault("RUST_LOG", "info")
    env["NO_COLOR"] = "1"  # logs go to files that failing tests print: no ANSI escapes
    env["AGENTD_LOG_FORMAT"] = "text"
    env.update(extra or {})
    return env


@dataclass
class Proc:
    """A child process whose stderr goes to a file (a pipe could fill up and block it)."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    mark: int = 0  # log size when the current test started

    def log_text(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def tail(self, since: int = 0, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text(since).splitlines()[-lines:])

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_GRACE_S. Returns the exit code (None if it had to be killed)."""
        if self.popen.poll() is not None:
            return self.popen.returncode
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=STOP_GRACE_S)
            return None


def start_process(
    name: str, args: list[str], log_path: Path, env: dict[str, str], stdout_path: Path | None = None
) -> Proc:
    """Start a child with stderr to `log_path`; stdout goes there too unless `stdout_path` is given."""
    log = open(log_path, "ab")
    out = open(stdout_path, "ab") if stdout_path is not None else None
    try:
        popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out if out is not None else log,
            stderr=log,
            env=env,
            cwd=log_path.parent,
        )
    finally:
        log.close()
        if out is not None:
            out.close()
    return Proc(name=name, popen=popen, log_path=log_path)


def wait_http_ok(proc: Proc, url: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Poll `url` until it answers 200; fail at once (with the log) if the process exits."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited with code {proc.popen.returncode} before {url} answered 200.\n"
                f"--- {proc.name} output ---\n{proc.tail()}"
            )
        try:
            r = httpx.get(url, timeout=2.0)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(0.05)
    raise RuntimeError(
        f"{proc.name} did not answer 200 on {url} within {timeout_s}s (last: {last}).\n"
        f"--- {proc.name} output ---\n{proc.tail()}"
    )


def start_http_server(
    name: str, make_args, health_path: str, log_path: Path, env: dict[str, str], stdout_path: Path | None = None
) -> tuple[Proc, int]:
    """Start a server on a free port. A free port can be taken between our probe and the child's
    bind, so retry a few times with a new port when the child dies during startup."""
    errors = []
    for _ in range(3):
        port = free_port()
        proc = start_process(name, make_args(port), log_path, env, stdout_path)
        try:
            wait_http_ok(proc, f"http://127.0.0.1:{port}{health_path}")
            return proc, port
        except RuntimeError as e:
            proc.stop()
            errors.append(str(e))
            if proc.popen.returncode is None or "in use" not in proc.log_text().lower():
                break
    raise RuntimeError("\n\n".join(errors))


def sse_events(raw: str) -> list[tuple[str | None, str]]:
    """Split an SSE body into (event name, data) pairs, strictly: frames end with a blank line."""
    events = []
    assert raw.endswith("\n\n"), f"SSE body must end with a blank line, ends with {raw[-40:]!r}"
    for frame in raw.split("\n\n"):
        if not frame.strip():
            continue
        name, data = None, []
        for line in frame.split("\n"):
            if line.startswith(":"):
                continue  # comment / keep-alive
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
            else:
                raise AssertionError(f"unexpected SSE line {line!r} in frame {frame!r}")
        if data:
            events.append((name, "\n".join(data)))
    return events


def parse_json_events(events: list[tuple[str | None, str]]) -> list[dict]:
    out = []
    for _, data in events:
        out.append(json.loads(data))
    return out
