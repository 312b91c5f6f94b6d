-- Bollinger Band reversion (long only): buy a close below the lower band,
-- take profit at the middle band, stop at `stop_k` standard deviations.
name = "bollinger_reversion"

params = {
  period = 20,        -- band window (bars)
  k = 2.0,            -- band width, standard deviations
  stop_k = 3.0,       -- stop distance below the middle, standard deviations
  quantity = 0.0,    -- base units per trade; 0 = size_fraction of the cash (see the execution settings)
}

function detect_opportunity(md, ctx, ind)
  local upper, middle, lower = ind.bollinger(params.period, params.k)
  if lower and md.close < lower then
    local sd = (upper - middle) / params.k
    return {reason = "below_lower_band", middle = middle, stop = middle - params.stop_k * sd}
  end
  return nil
end

function filter_commitment(md, ctx, ind)
  if ctx.stop >= md.close then
    return {action = "cancel_analysis", reason = "stop_above_price"}
  end
  return {action = "enter_long", quantity = params.quantity > 0 and params.quantity or nil, stop_loss = ctx.stop,
          take_profit = ctx.middle > md.close and ctx.middle or nil, reason = "band_reversion"}
end

function manage_position(md, ctx, ind)
  local _, middle = ind.bollinger(params.period, params.k)
  if middle and md.close >= middle then
    return {action = "exit", reason = "reached_middle"}
  end
  return nil
end
