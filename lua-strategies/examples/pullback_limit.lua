-- Pullback with a limit entry (long only): in an uptrend (fast EMA above the
-- slow EMA, close above the fast EMA) bid for a pullback with a limit order at
-- the fast EMA, working for `expiry` bars. Stop-loss and take-profit at ATR
-- multiples from the limit price; a time stop closes a trade that goes nowhere.
-- See docs/orders.md for the fill rules of limit orders.
name = "pullback_limit"

params = {
  fast = 20,              -- fast EMA period (bars): the pullback level
  slow = 50,              -- slow EMA period (bars): the trend filter
  atr_period = 14,        -- ATR period (bars) for the stop and target distances
  stop_atr = 2.0,         -- stop-loss distance below the limit price, ATRs
  target_atr = 3.0,       -- take-profit distance above the limit price, ATRs
  expiry = 10,            -- bars the limit order works before it expires
  max_bars = 60,          -- time stop: exit at the close of this many bars held
  quantity = 0.0,         -- base units per trade; 0 = size_fraction of the cash (see the execution settings)
}

local function emas(ind)
  return ind.ema(params.fast), ind.ema(params.slow)
end

function detect_opportunity(md, ctx, ind)
  local fast, slow = emas(ind)
  if fast and slow and fast > slow and md.close > fast then
    return {reason = "uptrend"}
  end
  return nil
end

function filter_commitment(md, ctx, ind)
  local fast, slow = emas(ind)
  if fast <= slow then
    -- cancel_analysis also cancels a working order
    return {action = "cancel_analysis", reason = "trend_lost"}
  end
  if ind.order then
    return nil               -- the limit is working
  end
  if ctx.placed then
    -- The order expired (or its fill was rejected): look for a new setup.
    return {action = "cancel_analysis", reason = "not_filled"}
  end
  local atr = ind.atr(params.atr_period)
  if atr == nil or md.close <= fast then
    return {action = "cancel_analysis", reason = "no_pullback_level"}
  end
  ctx.placed = true
  return {
    action = "enter_long",
    limit_price = fast,                                  -- below the close: a pullback bid
    expiry_bars = params.expiry,
    stop_loss = fast - params.stop_atr * atr,
    take_profit = fast + params.target_atr * atr,
    time_stop_bars = params.max_bars,
    quantity = params.quantity > 0 and params.quantity or nil,
    reason = "pullback_to_ema",
  }
end

function manage_position(md, ctx, ind)
  return nil   -- the stop-loss, take-profit and time stop manage the trade
end
