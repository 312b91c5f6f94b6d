"""`tradesim serve` with a [portfolio]: its state, the entry gate across runners, halt and resume by API
(docs/serve.md, docs/orders.md Risk limits), against a real server in a thread."""

from __future__ import annotations

import pytest

from .conftest import make_server, wait_for


@pytest.fixture(scope="module")
def portfolio_live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-portfolio")
    folder = tmp / "strategies"
    # both runners buy on their first bar and hold: with max_open_positions = 1 only one may
    runners = [{"symbol": s, "strategy": str(folder / "hold.lua"), "feed": "sim"} for s in ("BTCUSDT", "ETHUSDT")]
    srv = make_server(tmp, runners=runners, portfolio={"max_open_positions": 1}, record=False)
    yield srv
    srv.stop()


def test_portfolio_state_gate_halt_and_resume(portfolio_live):
    with portfolio_live.client() as c:
        state = wait_for(lambda: (p := c.get("/api/portfolio").json())["open_positions"] == 1 and p,
                         what="one open position")
        assert state["config"]["max_open_positions"] == 1 and not state["halted"]
        assert set(state["exposure"]) == {"BTCUSDT", "ETHUSDT"}
        rows = {r["id"]: r for r in c.get("/api/runners").json()}
        holder = next(rid for rid, r in rows.items() if r["position"])
        other = next(rid for rid in rows if rid != holder)
        # the other runner's entries are rejected by the gate, each a risk_limit event
        wait_for(lambda: c.get("/api/engine/summary").json()["portfolio"]["risk_events"] > 0, what="a rejection")
        assert not c.get(f"/api/runners/{other}/snapshot").json()["position"]
        # halting the holder frees the slot: the other runner enters
        assert c.post(f"/api/runners/{holder}/halt").status_code == 202
        wait_for(lambda: (s := c.get(f"/api/runners/{holder}/snapshot").json())["status"] == "halted"
                 and s["position"] is None, what="halted and flat")
        wait_for(lambda: c.get(f"/api/runners/{other}/snapshot").json()["position"], what="the other enters")
        trades = c.get(f"/api/runners/{holder}/trades").json()
        assert trades[-1]["exit_reason"] == "risk_halt"
        assert c.post(f"/api/runners/{holder}/resume").status_code == 202
        wait_for(lambda: c.get(f"/api/runners/{holder}/snapshot").json()["status"] == "running", what="resumed")
        assert c.post("/api/portfolio/resume").status_code == 202


def test_no_portfolio_is_a_404(tmp_path):
    srv = make_server(tmp_path, record=False)
    try:
        with srv.client() as c:
            assert c.get("/api/portfolio").status_code == 404
            assert c.post("/api/portfolio/resume").status_code == 404
            assert c.get("/api/engine/summary").json()["portfolio"] is None
    finally:
        srv.stop()
