-- Deterministic strategy for tests: enters on every `every`-th bar it sees
-- while idle, exits `hold` bars later. Exercises context and indicators.
name = "test_strategy"

params = {every = 10, hold = 3, quantity = 1.0, side = "long", use_sma = 5}

local seen = 0

function detect_opportunity(md, ctx, ind)
  seen = seen + 1
  local sma = ind.sma(params.use_sma)
  if sma ~= nil and seen % params.every == 0 then
    return {reason = "tick", seen = seen, sma = sma}
  end
  return nil
end

function filter_commitment(md, ctx, ind)
  local action = params.side == "short" and "enter_short" or "enter_long"
  return {action = action, quantity = params.quantity, reason = "test_entry"}
end

function manage_position(md, ctx, ind)
  ctx.held = (ctx.held or 0) + 1
  if ctx.held >= params.hold then
    return {action = "exit", reason = "held"}
  end
  return nil
end
