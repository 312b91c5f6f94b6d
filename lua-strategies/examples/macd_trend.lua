-- MACD trend following (long and short): go long when the MACD line crosses
-- above its signal line above zero, short when it crosses below under zero;
-- exit on the opposite cross.
name = "macd_trend"

params = {
  fast = 12, slow = 26, signal = 9,   -- MACD periods (bars)
  quantity = 0.0,                    -- base units per trade; 0 = size_fraction of the cash (see the execution settings)
  allow_short = true,
}

local last_ts, prev_hist, cur_hist, cur_macd

local function observe(md, ind)
  if md.timestamp ~= last_ts then
    last_ts = md.timestamp
    prev_hist = cur_hist
    local m, _, h = ind.macd(params.fast, params.slow, params.signal)
    cur_macd, cur_hist = m, h
  end
  if prev_hist == nil or cur_hist == nil then return 0 end
  if prev_hist <= 0 and cur_hist > 0 then return 1 end
  if prev_hist >= 0 and cur_hist < 0 then return -1 end
  return 0
end

function detect_opportunity(md, ctx, ind)
  local cross = observe(md, ind)
  if cross == 1 and cur_macd > 0 then return {reason = "bullish_cross", dir = 1} end
  if cross == -1 and cur_macd < 0 and params.allow_short then
    return {reason = "bearish_cross", dir = -1}
  end
  return nil
end

function filter_commitment(md, ctx, ind)
  observe(md, ind)
  local action = ctx.dir == 1 and "enter_long" or "enter_short"
  return {action = action, quantity = params.quantity > 0 and params.quantity or nil, reason = ctx.reason}
end

function manage_position(md, ctx, ind)
  local cross = observe(md, ind)
  if cross ~= 0 and cross ~= ctx.dir then
    return {action = "exit", reason = "opposite_cross"}
  end
  return nil
end
