"""The live engine: many runners on asyncio feeds, strategies on worker threads.

* `TradingEngine`: add/remove runners (symbol × strategy), pause/resume/stop, health,
  snapshots and price history, events.
* `RunnerHandle`: a runner's bounded inbox and counters.
* `WorkerPool`: the threads strategies run on (never the event loop).
"""

from tradesim.engine.handle import RunnerHandle
from tradesim.engine.trading_engine import TradingEngine, UnknownRunner
from tradesim.engine.workers import WorkerPool

__all__ = ["RunnerHandle", "TradingEngine", "UnknownRunner", "WorkerPool"]
