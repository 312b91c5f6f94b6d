-- Risk-per-trade sizing (long only): on an EMA cross up, buy at the market
-- with the stop-loss below the recent low (at least `min_stop_atr` ATRs away)
-- and a size that loses `risk_pct` % of the equity if that stop is hit
-- (risk_fraction). Take half off at 1R, move the stop to breakeven after 1R,
-- take profit at `reward` R, and exit the rest when the EMAs cross back.
-- See docs/orders.md (Sizing, Position management).
name = "risk_sizing"

params = {
  fast = 10,              -- fast EMA period (bars)
  slow = 30,              -- slow EMA period (bars)
  lookback = 20,          -- bars whose low places the stop
  atr_period = 14,        -- ATR period (bars)
  min_stop_atr = 2.0,     -- the stop is at least this many ATRs below the close
  risk_pct = 0.1,         -- equity lost at the stop, percent (1-minute stops are tight:
                          -- 0.1 % risk is about the whole equity's notional)
  reward = 2.0,           -- take-profit distance in multiples of the risk (R)
}

-- The previous bar's EMAs, to see a cross (script locals, updated once per bar).
local last_ts, prev_fast, prev_slow, cur_fast, cur_slow

local function observe(md, ind)
  if md.timestamp ~= last_ts then
    last_ts = md.timestamp
    prev_fast, prev_slow = cur_fast, cur_slow
    cur_fast, cur_slow = ind.ema(params.fast), ind.ema(params.slow)
  end
  local ready = prev_fast and prev_slow and cur_fast and cur_slow
  local up = ready and prev_fast <= prev_slow and cur_fast > cur_slow
  local down = ready and prev_fast >= prev_slow and cur_fast < cur_slow
  return up, down
end

function detect_opportunity(md, ctx, ind)
  local up = observe(md, ind)
  local low, atr = ind.low(params.lookback), ind.atr(params.atr_period)
  if up and low and atr then
    local stop = math.min(low, md.close - params.min_stop_atr * atr)
    return {reason = "ema_cross_up", stop = stop, risk = md.close - stop}
  end
  return nil
end

function filter_commitment(md, ctx, ind)
  observe(md, ind)
  if ctx.tried then
    -- The entry was rejected (e.g. the next open gapped below the stop): drop the setup.
    return {action = "cancel_analysis", reason = "entry_rejected"}
  end
  ctx.tried = true
  return {
    action = "enter_long",
    risk_fraction = params.risk_pct / 100,
    stop_loss = ctx.stop,
    take_profit = md.close + params.reward * ctx.risk,
    breakeven_after = ctx.risk,
    reason = "ema_cross_up",
  }
end

function manage_position(md, ctx, ind)
  local _, down = observe(md, ind)
  if down then
    return {action = "exit", reason = "ema_cross_down"}
  end
  local pos = ind.position
  if not ctx.partial and md.close >= pos.entry_price + ctx.risk then
    ctx.partial = true
    return {action = "exit", fraction = 0.5, reason = "partial_1r"}
  end
  return nil
end
