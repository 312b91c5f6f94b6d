-- Host-side Lua: the strategy API (market_data, context, indicators) and the
-- per-bar dispatcher. Runs with the real globals inside the sandbox's guard;
-- user code only ever sees the tables built here.
--
-- Why this shape: crossing the Python/Lua boundary dominates per-bar cost, so
-- the bar and every indicator value arrive as positional numbers, indicator
-- functions read Lua-side slots, and the common "no action" answer is an empty
-- return. Python is called back only the first time a strategy asks for an
-- indicator (to create and warm it) — never per bar.

local H, register_indicator, codes = ...
local env = H.env
local rawget, rawset, type, select, next = rawget, rawset, type, select, next

-- The protocol's numbers come from the host (tradesim.strategy.decision.lua_codes),
-- which defines them once for Lua, C and Python; a missing one stops the load.
local function code(name)
  local v = rawget(codes, name)
  if math.type(v) ~= "integer" then error("api.lua: the host passed no code " .. name, 2) end
  return v
end
local STATE_IDLE, STATE_ANALYZING = code("STATE_IDLE"), code("STATE_ANALYZING")
local STARTED, ACTION, INVALID_TABLE, STARTED_ACTION = code("RESULT_STARTED"),
  code("RESULT_ACTION"), code("RESULT_INVALID_TABLE"), code("RESULT_STARTED_ACTION")
local SIDE_LONG, SYNC_FLAT, SYNC_CLEAR_CONTEXT = code("SIDE_LONG"), code("SYNC_FLAT"),
  code("SYNC_CLEAR_CONTEXT")
local SYNC_ORDER_LONG, SYNC_ORDER_SHORT, SYNC_NO_ORDER = code("SYNC_ORDER_LONG"),
  code("SYNC_ORDER_SHORT"), code("SYNC_NO_ORDER")

-- An action's numeric fields in protocol order: the host numbers them (AMOUNT_<NAME>, 0-based).
local FIELDS = {}
for k, v in pairs(codes) do
  if k:sub(1, 7) == "AMOUNT_" then FIELDS[v + 1] = k:sub(8):lower() end
end
local NA = #FIELDS
if NA == 0 then error("api.lua: the host passed no AMOUNT_ codes", 1) end

-- Reused tables handed to the user's functions.
local md = H.protect(H.new_table())        -- market_data (rewritten each bar)
local ctx = H.new_table()                   -- context: the strategy's own scratch space
local ind = H.protect(H.new_table())        -- indicators API
local V = {}                                -- indicator values by slot (1-based), NaN while warming
local position = nil                        -- set while in position (a protected table)

local nvals = 0                             -- slots in use (the bank's n_values)

-- First use of an indicator: Python creates it in the runner's bank (warmed
-- from the window) and answers slot, n_outputs, values... or nil, message.
-- Validation happens there, once; the per-bar path is a cache hit.
-- `level` points error() at the script's line: 3 from single(), 4 from multi().
local function register(level, kind, a, b, c)
  local slot, n, x1, x2, x3 = register_indicator(kind, a, b, c)
  if slot == nil then error(n, level) end
  V[slot] = x1
  if n > 1 then V[slot + 1] = x2 end
  if n > 2 then V[slot + 2] = x3 end
  if slot + n - 1 > nvals then nvals = slot + n - 1 end
  return slot
end

-- One-parameter, one-output indicators: a closure over its own slot cache.
local function single(kind)
  local slots = {}
  return function(p)
    local s = slots[p]
    if s == nil then
      s = register(3, kind, p)
      slots[p] = s
    end
    local v = V[s]
    if v ~= v then return nil end   -- NaN: still warming up
    return v
  end
end

local function value(slot)
  local v = V[slot]
  if v ~= v then return nil end
  return v
end

-- Multi-parameter indicators: caches nested by parameter.
local function multi(kind, da, db, dc)
  local slots = {}
  return function(a, b, c)
    if a == nil then a = da end
    if b == nil then b = db end
    if c == nil then c = dc end
    local t = slots[a]
    if t == nil then t = {}; slots[a] = t end
    local s
    if dc == nil then
      s = t[b]
      if s == nil then s = register(4, kind, a, b); t[b] = s end
    else
      local u = t[b]
      if u == nil then u = {}; t[b] = u end
      s = u[c]
      if s == nil then s = register(4, kind, a, b, c); u[c] = s end
    end
    return s
  end
end

for _, kind in ipairs({"sma", "ema", "rsi", "atr", "vwap", "high", "low", "range", "avg_volume"}) do
  rawset(ind, kind, single(kind))
end
local macd_slot = multi("macd", 12, 26, 9)
local bb_slot = multi("bollinger", 20, 2)
local stoch_slot = multi("stochastic", 14, 3, 3)
rawset(ind, "macd", function(f, s, g)
  local slot = macd_slot(f, s, g)
  return value(slot), value(slot + 1), value(slot + 2)
end)
rawset(ind, "bollinger", function(p, k)
  local slot = bb_slot(p, k)
  return value(slot), value(slot + 1), value(slot + 2)
end)
rawset(ind, "stochastic", function(k, s, d)
  local slot = stoch_slot(k, s, d)
  return value(slot), value(slot + 1)
end)

-- Action tables are unpacked with raw access only (a user metatable never
-- runs in the host) into scalars; Python validates the values.
local ALLOWED = {action = true, reason = true}
local INDEX = {}                            -- numeric field name -> its position in AMT
for i, f in ipairs(FIELDS) do ALLOWED[f] = true; INDEX[f] = i end
-- The numeric fields and reason of one action, reused: only the slots the last
-- table set are cleared (a table sets a few of the NA fields).
local AMT = {}
local dirty, ndirty = {}, 0

local function describe(v)
  local t = type(v)
  if t == "number" or t == "boolean" then return tostring(v) end
  if t == "string" then return #v > 64 and (v:sub(1, 64) .. "...") or v end
  return t
end

-- Returns ACTION, fname, action, <the NA numeric fields, nil when absent>, reason
-- or INVALID_TABLE, fname, field, description (a malformed table).
local function unpack_action(fname, t)
  if type(t) ~= "table" then
    return INVALID_TABLE, fname, "result", "a " .. type(t) .. " (expected nil or an action table)"
  end
  for i = 1, ndirty do AMT[dirty[i]] = nil end
  ndirty = 0
  for k, v in next, t do
    if type(k) ~= "string" or not ALLOWED[k] then
      return INVALID_TABLE, fname, describe(k), "unknown field"
    end
    local i = INDEX[k]
    if i then
      if type(v) ~= "number" then
        return INVALID_TABLE, fname, k, describe(v) .. " (" .. type(v) .. ", expected a number)"
      end
      AMT[i] = v
      ndirty = ndirty + 1
      dirty[ndirty] = i
    elseif type(v) ~= "string" then   -- action, reason
      return INVALID_TABLE, fname, k, describe(v) .. " (" .. type(v) .. ", expected a string)"
    end
  end
  local action = rawget(t, "action")
  if action == nil then return INVALID_TABLE, fname, "action", "missing" end
  AMT[NA + 1] = rawget(t, "reason")
  return ACTION, fname, action, table.unpack(AMT, 1, NA + 1)
end

-- detect_opportunity's table is the setup: its scalar fields go into context.
local function store_setup(t)
  if type(t) ~= "table" then return nil end
  local reason = nil
  for k, v in next, t do
    local tv = type(v)
    if type(k) == "string" and (tv == "number" or tv == "string" or tv == "boolean") then
      rawset(ctx, k, v)
      if k == "reason" and tv == "string" then reason = v end
    end
  end
  return reason
end

local detect, filter, manage

local function resolve()
  detect = rawget(env, "detect_opportunity")
  filter = rawget(env, "filter_commitment")
  manage = rawget(env, "manage_position")
end
resolve()

local function fill_many(...)
  for i = 1, select("#", ...) do V[i] = (select(i, ...)) end
end

-- The per-bar entry point. Arguments: state, the bar, then the bank's values.
-- Returns nothing (no action); STARTED, reason (analysis started, no action
-- yet); the unpack_action results; or STARTED_ACTION, reason, <unpack_action
-- results> (analysis started and filter_commitment acted on the same bar).
local function on_bar(state, ts, o, h, l, c, v, bid, ask, ...)
  md.timestamp = ts
  md.open = o
  md.high = h
  md.low = l
  md.close = c
  md.volume = v
  -- Unknown quotes arrive as NaN; strategies see nil, and mid falls back to close.
  if bid ~= bid then bid = nil end
  if ask ~= ask then ask = nil end
  md.bid = bid
  md.ask = ask
  if bid and ask then md.mid_price = (bid + ask) * 0.5 else md.mid_price = c end
  -- Fixed-width assignments: cheaper than a loop over select().
  local n = nvals
  if n ~= 0 then
    if n <= 2 then V[1], V[2] = ...
    elseif n <= 4 then V[1], V[2], V[3], V[4] = ...
    elseif n <= 8 then V[1], V[2], V[3], V[4], V[5], V[6], V[7], V[8] = ...
    else fill_many(...) end
  end
  if state == STATE_IDLE then
    local setup = detect(md, ctx, ind)
    if setup == nil then return end
    local reason = store_setup(setup)
    -- Committing can happen on the same bar the setup is found.
    local act = filter(md, ctx, ind)
    if act == nil then return STARTED, reason end
    return STARTED_ACTION, reason, unpack_action("filter_commitment", act)
  elseif state == STATE_ANALYZING then
    local act = filter(md, ctx, ind)
    if act == nil then return end
    return unpack_action("filter_commitment", act)
  else
    if position then
      local p = position
      rawset(p, "unrealized_pnl", p.quantity * (c - p.entry_price) * p.sign)
    end
    local act = manage(md, ctx, ind)
    if act == nil then return end
    return unpack_action("manage_position", act)
  end
end

-- Host controls (called from Python on rare events only).
local function set_position(side, quantity, entry_price, stop_loss, take_profit, entry_time)
  if side == nil then
    position = nil
    rawset(ind, "position", nil)
    return
  end
  if stop_loss ~= stop_loss then stop_loss = nil end
  if take_profit ~= take_profit then take_profit = nil end
  position = H.protect(H.new_table())
  rawset(position, "side", side)
  rawset(position, "sign", side == "long" and 1 or -1)
  rawset(position, "quantity", quantity)
  rawset(position, "entry_price", entry_price)
  rawset(position, "entry_time", entry_time)
  rawset(position, "stop_loss", stop_loss)
  rawset(position, "take_profit", take_profit)
  rawset(position, "unrealized_pnl", 0.0)
  rawset(ind, "position", position)
end

local function set_symbol(symbol)
  md.symbol = symbol
end

local function clear_context()
  for k in next, ctx do rawset(ctx, k, nil) end
end

-- The working entry order as `indicators.order` (nil when none). NaN = not set.
local function set_order(what, placed_time, quantity, limit_price, stop_price, expires_time)
  if what == SYNC_NO_ORDER then
    rawset(ind, "order", nil)
    return
  end
  local o = H.new_table()
  rawset(o, "side", what == SYNC_ORDER_LONG and "long" or "short")
  rawset(o, "type", limit_price == limit_price and "limit" or "stop")
  if limit_price == limit_price then rawset(o, "limit_price", limit_price) end
  if stop_price == stop_price then rawset(o, "stop_price", stop_price) end
  if quantity == quantity then rawset(o, "quantity", quantity) end
  rawset(o, "placed_time", placed_time)
  if expires_time == expires_time then rawset(o, "expires_time", expires_time) end
  rawset(ind, "order", H.protect(o))
end

-- The runner's fills, called from C with numbers only: SIDE_LONG / SIDE_SHORT
-- (set the position), SYNC_FLAT, SYNC_CLEAR_CONTEXT (empty the context),
-- SYNC_ORDER_LONG / SYNC_ORDER_SHORT / SYNC_NO_ORDER (the working order).
local function sync(what, entry_time, quantity, entry_price, stop_loss, take_profit)
  if what == SYNC_CLEAR_CONTEXT then return clear_context() end
  if what == SYNC_FLAT then return set_position(nil) end
  if what >= SYNC_ORDER_LONG then
    return set_order(what, entry_time, quantity, entry_price, stop_loss, take_profit)
  end
  set_position(what == SIDE_LONG and "long" or "short", quantity, entry_price, stop_loss,
               take_profit, entry_time)
end

local function set_context(k, v)
  rawset(ctx, k, v)
end

-- A table's scalar entries (string keys; number/string/boolean values), raw,
-- flattened to k1, v1, k2, v2, ... so Python never holds a user table.
local function flat_scalars(t)
  if type(t) ~= "table" then return end
  local out = {}
  for k, v in next, t do
    local tv = type(v)
    if type(k) == "string" and (tv == "number" or tv == "string" or tv == "boolean") then
      out[#out + 1] = k
      out[#out + 1] = v
    end
  end
  return table.unpack(out)
end

local function context_snapshot()
  return flat_scalars(ctx)
end

-- The context itself, for LuaDirect.scalar_entries: it reads the same entries in C (and never
-- hands the table to Python).
local function context_table()
  return ctx
end

local function params_snapshot()
  return flat_scalars(rawget(env, "params"))
end

local function set_param(k, v)
  local p = rawget(env, "params")
  if type(p) ~= "table" then p = {}; rawset(env, "params", p) end
  rawset(p, k, v)
end

local function strategy_name()
  local n = rawget(env, "name")
  if type(n) == "string" then return n end
  return nil
end

return {on_bar = on_bar, set_position = set_position, clear_context = clear_context, sync = sync,
        set_context = set_context, context_snapshot = context_snapshot, context_table = context_table,
        params_snapshot = params_snapshot, set_param = set_param,
        strategy_name = strategy_name, resolve = resolve, set_symbol = set_symbol}
