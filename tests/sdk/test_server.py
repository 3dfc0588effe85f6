"""Operational endpoints of the running gateway, and a full start/stop of a second instance."""

from __future__ import annotations

import httpx
from support import child_env, start_http_server


def test_health_ready_metrics(agentd, oai):
    oai.chat.completions.create(model="mock", messages=[{"role": "user", "content": "count me"}])
    with agentd.http() as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        m = http.get("/metrics")
    assert m.status_code == 200, m.text
    assert m.headers["content-type"].startswith("text/plain"), m.headers
    assert "# TYPE " in m.text, "Prometheus text exposition expected"


def test_unknown_route_is_404(agentd):
    with agentd.http() as http:
        r = http.get("/v1/no-such-route", headers={"Authorization": f"Bearer {agentd.key}"})
    assert r.status_code == 404, r.text


def test_serve_starts_and_stops_cleanly(agentd, tmp_path):
    """A second gateway on its own data dir: ready, silent on stdout, exits 0 on SIGTERM."""
    cfg = tmp_path / "agentd.toml"
    cfg.write_text('[providers.local]\nkind = "mock"\n\n[models.mock]\nprovider = "local"\n')
    data = tmp_path / "data"
    data.mkdir()
    stdout = tmp_path / "stdout.log"
    proc, port = start_http_server(
        "agentd serve (second instance)",
        lambda port: [str(agentd.bin), "serve", "-c", str(cfg), "--data-dir", str(data), "--listen", f"127.0.0.1:{port}"],
        "/readyz",
        tmp_path / "stderr.log",
        child_env(),
        stdout_path=stdout,
    )
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        code = proc.stop()
    assert code == 0, f"exit code after SIGTERM: {code} (None = had to be killed)\n{proc.tail()}"
    assert stdout.read_text() == "", "`agentd serve` must print nothing on stdout (logs go to stderr)"
    assert any(data.iterdir()), "the embedded store should live in --data-dir"
