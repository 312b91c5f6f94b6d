-- Breakout with a stop entry and an ATR trailing stop (long only): when the
-- close comes within one ATR of the `lookback`-bar high, place a buy stop just
-- above that high, working for `expiry` bars. Once filled, the initial
-- stop-loss sits `stop_atr` ATRs below the stop price and trails the close at
-- `trail_atr` ATRs (it only ever tightens). See docs/orders.md.
name = "breakout_stop_atr"

params = {
  lookback = 60,          -- bars in the range whose high is the breakout level
  atr_period = 14,        -- ATR period (bars), for the buffer, the stop and the trail
  buffer_atr = 0.1,       -- stop price above the range high, ATRs
  stop_atr = 2.0,         -- initial stop-loss below the stop price, ATRs
  trail_atr = 3.0,        -- trailing stop distance from the close, ATRs
  expiry = 15,            -- bars the stop order works before it expires
  quantity = 0.0,         -- base units per trade; 0 = size_fraction of the cash (see the execution settings)
}

function detect_opportunity(md, ctx, ind)
  local high, atr = ind.high(params.lookback), ind.atr(params.atr_period)
  if high and atr and atr > 0 and md.close > high - atr then
    return {reason = "near_range_high", level = high + params.buffer_atr * atr, atr = atr}
  end
  return nil
end

function filter_commitment(md, ctx, ind)
  if ind.order then
    return nil               -- the stop order is working
  end
  if ctx.placed then
    return {action = "cancel_analysis", reason = "not_triggered"}   -- it expired
  end
  ctx.placed = true
  return {
    action = "enter_long",
    stop_price = ctx.level,                              -- above the high, so above the close
    expiry_bars = params.expiry,
    stop_loss = ctx.level - params.stop_atr * ctx.atr,
    trailing_atr = params.trail_atr,
    atr_period = params.atr_period,
    quantity = params.quantity > 0 and params.quantity or nil,
    reason = "range_breakout",
  }
end

function manage_position(md, ctx, ind)
  return nil   -- the trailing stop manages the trade
end
