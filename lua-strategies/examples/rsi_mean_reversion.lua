-- RSI mean reversion (long only): buy when RSI drops below `oversold`, sell
-- when it recovers above `exit_level`; a stop-loss and take-profit bound each trade.
name = "rsi_mean_reversion"

params = {
  period = 14,            -- RSI period (bars)
  oversold = 30,          -- enter below this RSI
  exit_level = 50,        -- exit above this RSI
  stop_loss_pct = 1.0,    -- stop-loss distance below entry, percent
  take_profit_pct = 2.0,  -- take-profit distance above entry, percent
  quantity = 0.0,        -- base units per trade; 0 = size_fraction of the cash (see the execution settings)
}

function detect_opportunity(md, ctx, ind)
  local rsi = ind.rsi(params.period)
  if rsi and rsi < params.oversold then
    return {reason = "rsi_oversold", rsi = rsi}
  end
  return nil
end

function filter_commitment(md, ctx, ind)
  local rsi = ind.rsi(params.period)
  if rsi == nil or rsi >= params.exit_level then
    return {action = "cancel_analysis", reason = "rsi_recovered"}
  end
  -- Commit once the RSI turns up from its oversold reading.
  if rsi > ctx.rsi then
    return {
      action = "enter_long",
      quantity = params.quantity > 0 and params.quantity or nil,
      stop_loss = md.close * (1 - params.stop_loss_pct / 100),
      take_profit = md.close * (1 + params.take_profit_pct / 100),
      reason = "rsi_turning_up",
    }
  end
  ctx.rsi = rsi
  return nil
end

function manage_position(md, ctx, ind)
  local rsi = ind.rsi(params.period)
  if rsi and rsi > params.exit_level then
    return {action = "exit", reason = "rsi_recovered"}
  end
  return nil
end
