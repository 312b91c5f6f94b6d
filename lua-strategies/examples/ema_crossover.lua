-- EMA crossover (long only): buy when the fast EMA crosses above the slow EMA,
-- sell when it crosses back below.
name = "ema_crossover"

params = {
  fast = 10,          -- fast EMA period (bars)
  slow = 20,          -- slow EMA period (bars)
  quantity = 0.0,    -- base units per trade; 0 = size_fraction of the cash (see the execution settings)
}

-- The previous bar's EMAs, to see a cross. Kept in script locals (not in
-- context, which is cleared on exit) and updated once per bar whichever
-- entry point runs.
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
  if up then
    return {reason = "ema_cross_up", fast = cur_fast, slow = cur_slow}
  end
  return nil
end

function filter_commitment(md, ctx, ind)
  observe(md, ind)
  local qty = params.quantity
  if qty <= 0 then qty = nil end
  return {action = "enter_long", quantity = qty, reason = ctx.reason}
end

function manage_position(md, ctx, ind)
  local _, down = observe(md, ind)
  if down then
    return {action = "exit", reason = "ema_cross_down"}
  end
  return nil
end
