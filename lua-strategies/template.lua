-- Strategy template: copy this file and fill in the three functions.
-- The complete API is in lua-strategies/README.md.

-- Optional: a display name (defaults to the file name).
name = "my_strategy"

-- Optional: parameters with defaults; callers override them by name
-- (`tradesim backtest --param fast=5`, or LuaStrategy(path, params={...})).
-- Read them as params.x inside the functions below.
params = {
  period = 20,
  quantity = 0.01,
}

-- Called on every closed bar while IDLE (no setup, no position).
-- Return nil to keep scanning, or a table describing the setup: its fields
-- (numbers, strings, booleans) are stored in `context`, and the strategy moves
-- to ANALYZING. filter_commitment then runs on the same bar.
function detect_opportunity(market_data, context, indicators)
  -- market_data: symbol, timestamp (ms since epoch UTC, bar open time),
  --   open, high, low, close, volume, bid, ask (nil when unknown), mid_price
  -- indicators: sma(p), ema(p), rsi(p), macd(f, s, sig) -> 3 values,
  --   bollinger(p, k) -> upper, middle, lower, atr(p), stochastic(k, s, d) -> k, d,
  --   vwap(p), high(p), low(p), avg_volume(p), range(p); nil while warming up.
  local sma = indicators.sma(params.period)
  if sma and market_data.close > sma then
    return {reason = "above_sma", sma = sma}
  end
  return nil
end

-- Called while ANALYZING. Return nil to keep analyzing, or an action:
--   {action = "enter_long" | "enter_short", quantity = ..., stop_loss = ..., take_profit = ..., reason = ...}
--   {action = "cancel_analysis", reason = ...}
function filter_commitment(market_data, context, indicators)
  return {action = "enter_long", quantity = params.quantity, reason = context.reason}
end

-- Called while IN_POSITION (indicators.position has side, quantity,
-- entry_price, entry_time, stop_loss, take_profit, unrealized_pnl).
-- Return nil to hold, or {action = "exit", reason = ...},
-- {action = "update_stop_loss", price = ...}, {action = "update_take_profit", price = ...}.
function manage_position(market_data, context, indicators)
  local sma = indicators.sma(params.period)
  if sma and market_data.close < sma then
    return {action = "exit", reason = "below_sma"}
  end
  return nil
end
