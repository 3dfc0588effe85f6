"""Session fixtures: the real `agentd` binary, started twice.

* `agentd mock-llm` plays the upstream provider (it speaks both the OpenAI and the Anthropic wire
  formats), so the gateway's `openai` and `anthropic` provider kinds make real HTTP calls.
* `agentd serve` is the gateway under test, configured with an in-process mock provider and the two
  upstream providers pointing at the mock server. Each public chat model takes one path:

      mock       -> provider `local` (kind mock, in-process)
      gpt-up     -> provider `up-openai` (kind openai)    -> mock-llm /v1/chat/completions
      claude-up  -> provider `up-anthropic` (kind anthropic) -> mock-llm /v1/messages

  so an OpenAI-SDK call on `claude-up` and an Anthropic-SDK call on `gpt-up` exercise the
  translation between the two API shapes.

The binary is `$AGENTD_BIN`, else `$CARGO_TARGET_DIR/debug/agentd`, else `target/debug/agentd` at the
repository root (scripts/test.sh builds it). When a test fails, the tail of both servers' stderr
written during that test is attached to the report.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import anthropic
import httpx
import openai
import pytest
from support import (
    SDK_TIMEOUT_S,
    UPSTREAM_ANTHROPIC_KEY,
    UPSTREAM_OPENAI_KEY,
    Proc,
    agentd_bin,
    child_env,
    start_http_server,
)

# The SDKs fill in keys and URLs from these when a test leaves them out; the suite must not depend
# on (or leak) whatever the developer's shell has.
for _var in (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
):
    os.environ.pop(_var, None)

# Every live child, so a failing test can show what the servers logged meanwhile.
_PROCS: list[Proc] = []


def gateway_config(mock_port: int, key_cache_ttl_ms: int) -> str:
    return f"""# Written by tests/sdk/conftest.py
[server]
log_format = "text"

[auth]
key_cache_ttl_ms = {key_cache_ttl_ms}

[providers.local]
kind = "mock"

[providers.up-openai]
kind = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"
api_key = "{UPSTREAM_OPENAI_KEY}"

[providers.up-anthropic]
kind = "anthropic"
base_url = "http://127.0.0.1:{mock_port}"
api_key = "{UPSTREAM_ANTHROPIC_KEY}"

[models.mock]
provider = "local"

[models.gpt-up]
provider = "up-openai"
model = "mock"

[models.claude-up]
provider = "up-anthropic"
model = "mock"

[models.mock-embedding]
provider = "local"
"""


@dataclass
class Agentd:
    """A running gateway plus its upstream mock, and helpers to talk to them."""

    bin: Path
    workdir: Path
    config_path: Path
    data_dir: Path
    url: str  # gateway root, e.g. http://127.0.0.1:PORT
    mock_url: str  # mock-llm root
    key: str  # a valid client API key (created with `agentd keys create`)
    admin_key: str
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run `agentd ARGS -c CONFIG --data-dir DATA` against the gateway's store."""
        cmd = [str(self.bin), *args, "-c", str(self.config_path), "--data-dir", str(self.data_dir)]
        res = subprocess.run(
            cmd, env=self.env, cwd=self.workdir, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
            )
        return res

    def create_key(self, name: str) -> str:
        res = self.cli("keys", "create", "--name", name)
        lines = res.stdout.splitlines()
        assert len(lines) == 1 and lines[0].startswith("sk-agentd-"), (
            f"`agentd keys create` must print exactly one line with the secret, got stdout={res.stdout!r} "
            f"stderr={res.stderr!r}"
        )
        return lines[0]

    def openai(self, api_key: str | None = None, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=api_key or self.key, base_url=f"{self.url}/v1", max_retries=0, timeout=SDK_TIMEOUT_S, **kw
        )

    def anthropic(self, api_key: str | None = None, auth_token: str | None = None, **kw: Any) -> anthropic.Anthropic:
        """A client sending `x-api-key` (default), or only `Authorization: Bearer` when `auth_token` is given."""
        if auth_token is None:
            kw["api_key"] = api_key or self.key
        else:
            kw["auth_token"] = auth_token
        return anthropic.Anthropic(base_url=self.url, max_retries=0, timeout=SDK_TIMEOUT_S, **kw)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=SDK_TIMEOUT_S)

    def mock_requests(self) -> list[dict]:
        r = httpx.get(f"{self.mock_url}/_mock/requests", timeout=5.0)
        r.raise_for_status()
        return r.json()

    def clear_mock_requests(self) -> None:
        httpx.delete(f"{self.mock_url}/_mock/requests", timeout=5.0).raise_for_status()


@pytest.fixture(scope="session")
def agentd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agentd]:
    binary = agentd_bin()
    if not binary.is_file():
        pytest.fail(
            f"agentd binary not found at {binary}: run `cargo build -p agentd` (scripts/test.sh does) "
            f"or set AGENTD_BIN",
            pytrace=False,
        )
    workdir = tmp_path_factory.mktemp("agentd")
    data_dir = workdir / "data"
    data_dir.mkdir()
    admin_key = "admin-" + secrets.token_hex(16)
    env = child_env({"AGENTD_ADMIN_KEY": admin_key})

    procs: list[Proc] = []
    try:
        mock, mock_port = start_http_server(
            "agentd mock-llm",
            lambda port: [str(binary), "mock-llm", "--addr", f"127.0.0.1:{port}"],
            "/healthz",
            workdir / "mock-llm.log",
            env,
        )
        procs.append(mock)
        _PROCS.append(mock)

        config_path = workdir / "agentd.toml"
        # A short key cache so a revoked key stops working quickly (tests/sdk/test_keys.py).
        config_path.write_text(gateway_config(mock_port, key_cache_ttl_ms=200))
        serve, port = start_http_server(
            "agentd serve",
            lambda port: [
                str(binary),
                "serve",
                "-c",
                str(config_path),
                "--data-dir",
                str(data_dir),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            "/readyz",
            workdir / "serve.log",
            env,
        )
        procs.append(serve)
        _PROCS.append(serve)

        gw = Agentd(
            bin=binary,
            workdir=workdir,
            config_path=config_path,
            data_dir=data_dir,
            url=f"http://127.0.0.1:{port}",
            mock_url=f"http://127.0.0.1:{mock_port}",
            key="",
            admin_key=admin_key,
            env=env,
            procs=procs,
        )
        gw.key = gw.create_key("sdk")
    except BaseException:
        for p in reversed(procs):
            p.stop()
        raise

    yield gw

    # A server that died mid-run fails the session even if every test it broke was already
    # reported: the crash itself is the bug to look at.
    died = [f"{p.name} exited with code {p.popen.returncode} during the tests" for p in procs if p.popen.poll() is not None]
    for p in reversed(procs):
        if died:
            print(f"\n--- {p.name} output (tail) ---\n{p.tail()}")
        p.stop()
        _PROCS.remove(p)
    if died:
        pytest.fail("; ".join(died), pytrace=False)


@pytest.fixture(scope="session")
def oai(agentd: Agentd) -> openai.OpenAI:
    return agentd.openai()


@pytest.fixture(scope="session")
def ant(agentd: Agentd) -> anthropic.Anthropic:
    return agentd.anthropic()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for p in _PROCS:
        p.mark = p.log_size()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for p in _PROCS:
            status = "running" if p.popen.poll() is None else f"exited with {p.popen.returncode}"
            rep.sections.append((f"{p.name} output during this test ({status})", p.tail(since=p.mark) or "(nothing)"))
