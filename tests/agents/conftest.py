"""Session fixture: the real `agentd` binary serving the agent API, driven by `langgraph-sdk`.

* `agentd mock-llm` plays the upstream LLM (OpenAI chat completions): it answers
  "Mock reply to: <last user message>" in 20 tokens, a tool call when the request has tools and the
  last message is the user's, and "Mock reply to tool result: …" after a tool result. Words such as
  `mock:token_delay_ms=200` in the prompt slow it down (crates/agentd-mock/src/directive.rs).
* `agentd serve` runs with the config below: agents `echo` (one LLM call) and `react` (LLM → the
  static tool `lookup` → LLM), a SQLite store in a temp dir, a 1 s TTL sweep, and the admin API, which
  the fixture uses to create one API key for each of two tenants.

The server must answer `GET /ok` with `{"ok": true}`; if it does not (an agentd without the agent
API), every test fails at once with that message rather than being skipped.

The tests call the async SDK; pytest-asyncio is not used: `support_agents.aio` runs each `async def`
test in its own event loop (a client must be created inside that loop).
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "sdk"))  # reuse tests/sdk/support.py (process helpers)

from support import Proc, agentd_bin, child_env, start_http_server  # noqa: E402

# langgraph-sdk reads these when a client is built without an explicit key: never let the
# developer's shell pick the key (every test passes one explicitly anyway).
for _var in ("LANGGRAPH_API_KEY", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY", "OPENAI_API_KEY"):
    os.environ.pop(_var, None)

UPSTREAM_KEY = "sk-test-upstream"
_PROCS: list[Proc] = []


def runtime_config(mock_port: int) -> str:
    return f"""# Written by tests/agents/conftest.py
[server]
log_format = "text"

[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"
api_key = "{UPSTREAM_KEY}"

[models.mock]
provider = "up"
model = "mock"

[agents.echo]
model = "mock"
description = "one LLM call"

[agents.react]
model = "mock"
tools = ["lookup"]

[tools.lookup]
kind = "static"
description = "Look up a fact."
parameters = {{ type = "object", properties = {{ query = {{ type = "string" }} }}, required = ["query"] }}
result = "lookup result: the answer is 42"

[runtime]
keepalive_ms = 1000
sweep_interval_s = 1
"""


@dataclass
class Runtime:
    """A running agentd (agent API) plus its upstream mock."""

    url: str
    mock_url: str
    admin_key: str
    key_a: str  # tenant "tenant-a"
    key_b: str  # tenant "tenant-b"
    workdir: Path
    procs: list[Proc] = field(default_factory=list)

    def client(self, key: str | None = None, timeout: float = 60.0):
        """An async langgraph-sdk client (tenant A unless `key` is given). Create it inside the
        test's event loop."""
        from langgraph_sdk import get_client

        return get_client(url=self.url, api_key=key or self.key_a, timeout=timeout)

    def http(self, key: str | None = None, timeout: float = 30.0) -> httpx.Client:
        """A raw HTTP client carrying the key as the SDK does (`x-api-key`)."""
        return httpx.Client(base_url=self.url, headers={"x-api-key": key or self.key_a}, timeout=timeout)


def _create_key(url: str, admin_key: str, tenant: str) -> str:
    r = httpx.post(
        f"{url}/admin/keys",
        json={"name": f"agents-{tenant}", "tenant": tenant},
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=10.0,
    )
    assert r.status_code == 201, f"POST /admin/keys answered {r.status_code}: {r.text[:300]}"
    return r.json()["key"]


@pytest.fixture(scope="session")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    binary = agentd_bin()
    if not binary.is_file():
        pytest.fail(
            f"agentd binary not found at {binary}: run `cargo build -p agentd` (scripts/test.sh does) "
            f"or set AGENTD_BIN",
            pytrace=False,
        )
    workdir = tmp_path_factory.mktemp("agentd-runtime")
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
        config_path.write_text(runtime_config(mock_port))
        try:
            serve, port = start_http_server(
                "agentd serve",
                lambda port: [
                    str(binary), "serve", "-c", str(config_path), "--data-dir", str(data_dir),
                    "--listen", f"127.0.0.1:{port}",
                ],
                "/readyz",
                workdir / "serve.log",
                env,
            )
        except RuntimeError as e:
            pytest.fail(
                f"agentd serve did not start with the agent-runtime config ({binary}); an agentd without "
                f"the agent API rejects the [agents]/[tools]/[runtime] tables.\n{e}",
                pytrace=False,
            )
        procs.append(serve)
        _PROCS.append(serve)
        url = f"http://127.0.0.1:{port}"
        key_a = _create_key(url, admin_key, "tenant-a")
        key_b = _create_key(url, admin_key, "tenant-b")
        try:
            r = httpx.get(f"{url}/ok", headers={"x-api-key": key_a}, timeout=10.0)
            ok = r.status_code == 200 and r.json() == {"ok": True}
            why = f"HTTP {r.status_code}: {r.text[:200]}"
        except (httpx.HTTPError, ValueError) as e:
            ok, why = False, repr(e)
        if not ok:
            pytest.fail(
                f"{binary} serves no LangGraph agent API: GET /ok must answer 200 {{\"ok\": true}}, got {why}",
                pytrace=False,
            )
        runtime = Runtime(
            url=url, mock_url=f"http://127.0.0.1:{mock_port}", admin_key=admin_key,
            key_a=key_a, key_b=key_b, workdir=workdir, procs=procs,
        )
    except BaseException:
        for p in reversed(procs):
            p.stop()
            if p in _PROCS:
                _PROCS.remove(p)
        raise

    yield runtime

    died = [f"{p.name} exited with code {p.popen.returncode} during the tests" for p in procs if p.popen.poll() is not None]
    for p in reversed(procs):
        if died:
            print(f"\n--- {p.name} output (tail) ---\n{p.tail()}")
        p.stop()
        _PROCS.remove(p)
    if died:
        pytest.fail("; ".join(died), pytrace=False)


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
