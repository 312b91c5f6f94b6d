"""Cython core (private). The Python layer imports from here; users import `tradesim`."""

from tradesim._core.market_data import MarketData, InvalidMarketData
from tradesim._core.window import MarketDataWindow, OutOfOrderBar
from tradesim._core.indicator import Indicator
from tradesim._core.averages import SMA, EMA, VWAP, sma, ema, vwap
from tradesim._core.momentum import RSI, MACD, Stochastic, rsi, macd, stochastic
from tradesim._core.volatility import BollingerBands, ATR, bollinger, atr
from tradesim._core.indicator_set import IndicatorSet, compute_all
from tradesim._core.rolling import Highest, Lowest, PriceRange, AverageVolume
from tradesim._core.bank import IndicatorBank
from tradesim._core.context import Context
from tradesim._core.state_machine import (
    State, Side, ActionType, Transition, InvalidTransition, Position, StateMachine)

__all__ = [
    "MarketData", "InvalidMarketData", "MarketDataWindow", "OutOfOrderBar", "Indicator",
    "SMA", "EMA", "VWAP", "RSI", "MACD", "Stochastic", "BollingerBands", "ATR",
    "IndicatorSet", "compute_all", "Highest", "Lowest", "PriceRange", "AverageVolume", "IndicatorBank",
    "State", "Side", "ActionType", "Transition", "InvalidTransition", "Position", "Context", "StateMachine", "sma", "ema", "vwap", "rsi", "macd", "stochastic", "bollinger", "atr",
]
