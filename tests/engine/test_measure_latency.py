"""The live-latency measurement itself: every frame the loopback server sends reaches a
decision and is stamped, with either server (no timing is asserted here: see benches/)."""

import pytest

from tradesim.bench.live import BUSY_POLL_US, live_latency


@pytest.mark.parametrize("server, busy_poll_us", [("framed", BUSY_POLL_US), ("websockets", 0.0)])
def test_every_frame_is_measured(server, busy_poll_us):
    res = live_latency(300, period=0.001, busy_poll_us=busy_poll_us, server=server)
    assert res["bars"] == 300                        # none lost between server, feed and runner
    assert len(res["ns"]) == 200                     # the first 100 are warm-up
    assert 0 < res["p50_ns"] <= res["p99_ns"] <= res["max_ns"]
    assert res["sent_p50_ns"] >= res["p50_ns"]       # from the server's send: never less
    assert res["host_ms_before"] > 0 and res["host_ms_after"] > 0


def test_an_unknown_server_is_refused():
    with pytest.raises(ValueError, match="server = 'nginx'"):
        live_latency(10, server="nginx")
