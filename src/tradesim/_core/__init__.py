"""Cython core (private). The Python layer imports from here; users import `tradesim`."""

from tradesim._core.averages import EMA, SMA, VWAP, ema, sma, vwap
from tradesim._core.bank import IndicatorBank
from tradesim._core.context import Context
from tradesim._core.indicator import Indicator
from tradesim._core.indicator_set import IndicatorSet, compute_all
from tradesim._core.market_data import InvalidMarketData, MarketData
from tradesim._core.momentum import MACD, RSI, Stochastic, macd, rsi, stochastic
from tradesim._core.rolling import AverageVolume, Highest, Lowest, PriceRange
from tradesim._core.state_machine import ActionType, InvalidTransition, Position, Side, State, StateMachine, Transition
from tradesim._core.volatility import ATR, BollingerBands, atr, bollinger
from tradesim._core.window import MarketDataWindow, OutOfOrderBar

__all__ = [
    "MarketData", "InvalidMarketData", "MarketDataWindow", "OutOfOrderBar", "Indicator",
    "SMA", "EMA", "VWAP", "RSI", "MACD", "Stochastic", "BollingerBands", "ATR",
    "IndicatorSet", "compute_all", "Highest", "Lowest", "PriceRange", "AverageVolume", "IndicatorBank",
    "State", "Side", "ActionType", "Transition", "InvalidTransition", "Position", "Context", "StateMachine",
    "sma", "ema", "vwap", "rsi", "macd", "stochastic", "bollinger", "atr",
]
