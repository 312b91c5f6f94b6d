-- Range breakout with volume confirmation (long only): buy when the close
-- breaks above the previous `lookback`-bar high on volume above `volume_factor`
-- times the average; stop at the range's low, trail it up as new highs form.
name = "range_breakout"

params = {
  lookback = 20,          -- bars in the range
  volume_factor = 1.5,    -- breakout volume vs the average volume
  quantity = 0.0,        -- base units per trade; 0 = size_fraction of the cash (see the execution settings)
  max_bars = 120,         -- give up on a trade after this many bars
}

local last_ts, prev_high, prev_low, cur_high, cur_low

local function observe(md, ind)
  if md.timestamp ~= last_ts then
    last_ts = md.timestamp
    prev_high, prev_low = cur_high, cur_low
    cur_high, cur_low = ind.high(params.lookback), ind.low(params.lookback)
  end
end

function detect_opportunity(md, ctx, ind)
  observe(md, ind)
  local avg = ind.avg_volume(params.lookback)
  if prev_high and avg and md.close > prev_high and md.volume > params.volume_factor * avg then
    return {reason = "breakout", range_low = prev_low, range_high = prev_high}
  end
  return nil
end

function filter_commitment(md, ctx, ind)
  observe(md, ind)
  return {action = "enter_long", quantity = params.quantity > 0 and params.quantity or nil, stop_loss = ctx.range_low,
          reason = "breakout_confirmed"}
end

function manage_position(md, ctx, ind)
  observe(md, ind)
  ctx.bars = (ctx.bars or 0) + 1
  if ctx.bars >= params.max_bars then
    return {action = "exit", reason = "time_stop"}
  end
  -- Trail the stop to the previous range's low once it is above the current stop.
  local pos = ind.position
  if prev_low and pos and pos.stop_loss and prev_low > pos.stop_loss and prev_low < md.close then
    return {action = "update_stop_loss", price = prev_low}
  end
  return nil
end
