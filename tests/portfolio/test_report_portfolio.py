"""The backtest report's Portfolio section: P&L and exposure charts rendered in Chromium, the final
figures, exposure per symbol and the risk events (escaped)."""

from __future__ import annotations

import json
import re

from tradesim.backtest import Backtest, write_report
from tradesim.portfolio import PortfolioConfig


def _report(tmp_path, level, bars_csv, name="r.html"):
    a = bars_csv("AAAUSDT", [99, 100, 101, 89, 95, 95])
    b = bars_csv("BBBUSDT", [99, 99, 100, 100, 100, 100])
    result = Backtest(level, [a, b], fill="close", portfolio=PortfolioConfig(max_open_positions=1)).run()
    path = write_report(tmp_path / name, symbol_bars=result.bars, trades=result.trades, equity=result.equity,
                        timestamps=result.timestamps, metrics=result.metrics, ledger=result.ledger,
                        portfolio=result.portfolio)
    return path, result


def test_portfolio_section_lists_pnl_exposure_and_events(tmp_path, level, bars_csv):
    path, result = _report(tmp_path, level, bars_csv)
    text = path.read_text(encoding="utf-8")
    section = text[text.index('<section class="portfolio"'):]
    section = section[:section.index("</section>")]
    # hand-computed (test_backtest_limits): A loses 11, B flat -> realised -11, nothing open
    assert re.search(r'data-portfolio="realised_pnl">-11.00<', section)
    assert re.search(r'data-portfolio="equity">9,989.00<', section)
    assert section.count('class="risk-event"') == 1 and "max_open_positions" in section
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', text, re.S).group(1))
    exposure = {x["symbol"]: x["v"] for x in data["portfolio"]["exposure"]}
    assert exposure == {"AAAUSDT": [0, 100, 101, 0, 0, 0], "BBBUSDT": [0, 0, 0, 100, 100, 0]}
    assert data["portfolio"]["realised"]["v"] == list(result.portfolio.realised)


def test_portfolio_charts_render(tmp_path, level, bars_csv, render_page):
    path, _ = _report(tmp_path, level, bars_csv)
    attrs = render_page(path)
    assert "data-error" not in attrs, attrs.get("data-error")
    assert attrs.get("data-rendered") == "ok"
    # the P&L and exposure charts drew something
    assert int(attrs["data-painted-pnl"]) >= 1 and int(attrs["data-painted-exposure"]) >= 1
