"""Recorded sessions read back: list, inspect, replay, compare, diff-live (docs/sessions.md)."""

from tradesim.sessions.compare import Comparison, Divergence, compare_outcomes, compare_sessions
from tradesim.sessions.replay import ReplayResult, backtest_session, replay
from tradesim.sessions.session import Session, SessionNotFound, list_sessions, open_session

__all__ = ["Comparison", "Divergence", "ReplayResult", "Session", "SessionNotFound", "backtest_session",
           "compare_outcomes", "compare_sessions", "list_sessions", "open_session", "replay"]
