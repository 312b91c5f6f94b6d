-- Host-side guard for one sandboxed Lua 5.4 runtime (tradesim.strategy.sandbox).
--
-- Runs once, in the real globals, before user code exists. It captures what the host needs
-- as upvalues, builds the whitelisted environment that user chunks get as _ENV, strips the
-- real globals, arms a permanent instruction-count hook and returns the host closures to
-- Python. docs/sandbox.md gives the reasoning; the comments here mark the details it does
-- not cover.
--
-- Every function handed to Python starts with the budget prologue (see `guarded`), because the
-- hook is permanent: Lua code entered without it could be charged against a previous call.

local LIMIT, SECONDS, EVERY, LOG_BYTES, LOG_MSGS, REP_BYTES, sink = ...

local debug_sethook, getinfo = debug.sethook, debug.getinfo
local error, type, select, next, tostring = error, type, select, next, tostring
local rawget, rawset, rawequal = rawget, rawset, rawequal
local real_pcall, real_setmetatable, real_getmetatable, load = pcall, setmetatable, getmetatable, load
local clock = os.clock
local co_create, co_resume = coroutine.create, coroutine.resume
local co_status, co_close = coroutine.status, coroutine.close
local math_type, tointeger, log, huge = math.type, math.tointeger, math.log, math.huge
local maxinteger = math.maxinteger
local str_sub, str_rep, str_format = string.sub, string.rep, string.format
local str_gsub, str_find = string.gsub, string.find
local str_byte, str_upper, str_lower, str_reverse = string.byte, string.upper, string.lower, string.reverse
local utf8_len = utf8.len
local tbl_concat, tbl_insert, tbl_remove = table.concat, table.insert, table.remove
local tbl_sort, tbl_move, tbl_unpack = table.sort, table.move, table.unpack
local co_yield, co_isyieldable, co_running = coroutine.yield, coroutine.isyieldable, coroutine.running

-- The error value of a timeout. Timeouts are recognised by the `expired` flag, never by this
-- text, so a script cannot fake (or hide) one with error("...").
local TIMEOUT = "sandbox timeout"

local ticks, firings, deadline, expired, reason = 0, 0, 0, false, nil
local where_src, where_line
local logged, dropped = 0, 0
local user_sources = {}                 -- ["=chunk"] = true for every loaded user chunk
local protected = real_setmetatable({}, {__mode = "k"})   -- host tables: no user metatables
local env = {}
local hook

-- Innermost frame that belongs to a user chunk, remembered for the timeout message.
local function locate()
  for level = 2, 40 do
    local info = getinfo(level, "Sl")
    if not info then return end
    if user_sources[info.source] and info.currentline > 0 then
      where_src, where_line = info.source, info.currentline
      return
    end
  end
end

-- Deepest call nesting allowed. Unbounded recursion would otherwise end at whichever limit
-- came first, Lua's stack size or the memory cap (it varied from run to run with the
-- collector's timing); 10,000 frames stay far below the memory cap, so the outcome is always
-- this clear error (docs/sandbox.md, Stack overflow).
local MAX_DEPTH = 10000
local DEPTH_MESSAGE = str_format("stack overflow: more than %d nested calls (unbounded recursion?)",
                                 MAX_DEPTH)

local function expire(why)
  if not expired then
    expired, reason = true, why
    locate()
  end
  debug_sethook(hook, "", 1)            -- sticky: fire on every instruction of this thread
  error(TIMEOUT, 0)
end

-- Fires every EVERY instructions in every thread that has it (see safe_create). The count
-- carries over between calls, so a call's first firing can come after any of its first EVERY
-- instructions; the CPU deadline starts at its second firing, after at least EVERY
-- instructions of the call. Calls shorter than that (every per-bar call of a typical
-- strategy) never pay for os.clock (about 0.5 us here).
hook = function()
  local t = ticks + 1
  ticks = t
  if expired then return expire(nil) end
  if t > LIMIT then return expire("instructions") end
  -- walks at most the actual depth: a few frames for an ordinary strategy
  if getinfo(MAX_DEPTH, "l") then error(DEPTH_MESSAGE, 2) end
  local f = firings + 1
  firings = f
  if f == 2 then
    deadline = clock() + SECONDS
  elseif f > 2 and clock() > deadline then
    return expire("cpu")
  end
end

-- Library functions whose work grows with their input run in C, where no count hook fires
-- (docs/sandbox.md, Work inside C functions). Beyond the pattern functions,
-- table.move({}, 1, 1e12, 1) loops forever without allocating, and table.sort on 500k numbers
-- takes ~150 ms per call, so a loop of such calls would outrun the deadline between two
-- firings. Their wrappers charge the estimated work, in instruction equivalents, to the shared
-- budget before calling C.
local INV = 1 / EVERY
local function charge(units)
  if not (units > 0) then return end   -- never a refund (also rejects nan)
  local t = ticks + units * INV
  ticks = t
  if t > LIMIT then return expire("instructions") end
end

-- Element count of i..j as a float, so that extreme integers cannot wrap to a negative cost.
local function span(i, j)
  if j < i then return 0 end
  return (j + 0.0) - i + 1
end

-- The prologue of every entry point from Python: a fresh budget, a fresh log quota.
-- A timeout that Python has not acknowledged (take_state) fails the next call too, so a
-- caller of a raw guarded function cannot miss one.
local function guarded(f)
  return function(...)
    if expired then error(TIMEOUT, 0) end
    ticks, firings, logged = 0, 0, 0
    return f(...)
  end
end

local function rethrow(ok, ...)
  if not ok and expired then error(TIMEOUT, 0) end
  return ok, ...
end

------------------------------------------------------------------------------------------
-- Argument checks that report the caller's line, like the real library does. Errors raised
-- from inside the C function would carry this file's position instead.

-- `depth` is the number of host frames between argerror's caller and the user's code.
local function argerror(n, fname, msg, depth)
  error(str_format("bad argument #%d to '%s' (%s)", n, fname, msg), (depth or 1) + 2)
end

local function checktable(t, n, fname)
  if type(t) ~= "table" then argerror(n, fname, "table expected, got " .. type(t), 2) end
  local len = #t                        -- honours __len exactly as the real function will
  if math_type(len) ~= "integer" then error("object length is not an integer", 3) end
  return len
end

local function checkstring(s, n, fname)
  local ts = type(s)
  if ts == "string" then return s end
  if ts == "number" then return tostring(s) end
  argerror(n, fname, "string expected, got " .. (ts == "nil" and "no value" or ts), 2)
end

-- For C functions whose errors cannot all be checked beforehand: call them through pcall, so
-- that a library error gets the user's line instead of this file's, while an error that
-- already carries a position (from a user comparator or __tostring) keeps it. Always
-- tail-called by a wrapper, so level 2 is the wrapper's caller.
-- (When user code itself tail-calls a wrapper, its frame is gone and the line is that of the
-- frame below, or none; the real C functions do not have that problem.)
local function reraise(ok, ...)
  if ok then return ... end
  if expired then error(TIMEOUT, 0) end
  local err = ...
  if type(err) == "string" and not str_find(err, "^[^\n:]+:%d+: ") then error(err, 2) end
  error(err, 0)
end

local function checkint(v, n, fname, default)
  if v == nil and default ~= nil then return default end
  if type(v) == "string" and #v > 64 then argerror(n, fname, "number expected, got string", 2) end
  local i = tointeger(v)
  if i == nil then
    if type(v) == "number" then argerror(n, fname, "number has no integer representation", 2) end
    argerror(n, fname, "number expected, got " .. (v == nil and "no value" or type(v)), 2)
  end
  return i
end

------------------------------------------------------------------------------------------
-- Wrapped base functions.

local function safe_pcall(f, ...)
  return rethrow(real_pcall(f, ...))
end

-- The handler runs after unwinding, as ordinary hooked code: a real xpcall handler would run
-- with hooks off when the error came from the hook (docs/sandbox.md, Hook bypasses, 1).
local function xp_finish(h, ok, ...)
  if ok then return true, ... end
  if expired then error(TIMEOUT, 0) end
  return false, (h((...)))
end
local function safe_xpcall(f, h, ...)
  if type(h) ~= "function" then argerror(2, "xpcall", "function expected, got " .. type(h)) end
  return xp_finish(h, real_pcall(f, ...))
end

local function safe_setmetatable(t, mt)
  if type(t) ~= "table" then argerror(1, "setmetatable", "table expected, got " .. type(t)) end
  if mt ~= nil and type(mt) ~= "table" then argerror(2, "setmetatable", "nil or table expected") end
  if mt ~= nil and rawget(mt, "__gc") ~= nil then
    error("__gc metamethods are not allowed in strategies", 2)
  end
  if protected[t] then error("cannot set a metatable on a table owned by the host", 2) end
  return real_setmetatable(t, mt)
end

-- Userdata metatables (lupa's, for Python objects) are shared by the whole runtime.
local function safe_getmetatable(v)
  local tv = type(v)
  if tv == "table" or tv == "string" then return real_getmetatable(v) end
  return nil
end

------------------------------------------------------------------------------------------
-- Coroutines. New threads inherit the C hook but not the Lua hook function (lookup is per
-- thread, ldblib.c), so each body arms the hook first (docs/sandbox.md, Hook bypasses, 2).

local function safe_create(f)
  if type(f) ~= "function" then argerror(1, "create", "function expected, got " .. type(f)) end
  return co_create(function(...)
    debug_sethook(hook, "", EVERY)
    return f(...)
  end)
end

local function safe_resume(co, ...)
  return rethrow(co_resume(co, ...))
end

-- Not coroutine.wrap: when the hook kills a coroutine, that thread keeps allowhook = 0, and
-- the real wrap then closes its to-be-closed variables (lua_closethread in auxwrap), so a
-- `local x <close>` whose __close loops ran unhooked: a hang, reproduced with lupa 2.8 /
-- Lua 5.4.8. Here a coroutine is closed only when it died of an ordinary error; one that
-- died of a timeout is never closed, and coroutine.close is not offered at all.
local function wrap_finish(co, ok, ...)
  if ok then return ... end
  if expired then error(TIMEOUT, 0) end
  if co_status(co) == "dead" then co_close(co) end
  error((...), 0)
end
local function safe_wrap(f)
  if type(f) ~= "function" then argerror(1, "wrap", "function expected, got " .. type(f)) end
  local co = safe_create(f)
  return function(...)
    if co_status(co) == "dead" then error("cannot resume dead coroutine", 2) end
    return wrap_finish(co, co_resume(co, ...))
  end
end

------------------------------------------------------------------------------------------
-- Charged table functions. Costs are in instruction equivalents (a hooked VM instruction is
-- ~3-10 ns here), from C timings on this machine: table.sort 10-15 ns per comparison (0.2-0.3 s
-- for 1e6 numbers), charged 2 per comparison; insert/remove/move/concat ~10 ns per element,
-- charged 1-2; unpack ~4 ns per element, charged 1.

local function safe_sort(t, cmp)
  local n = checktable(t, 1, "sort")
  if cmp ~= nil and type(cmp) ~= "function" then
    argerror(2, "sort", "function expected, got " .. type(cmp))
  end
  if n > 1 then charge(2 * n * log(n, 2)) end
  return reraise(real_pcall(tbl_sort, t, cmp))
end

local function safe_insert(t, ...)
  local n = checktable(t, 1, "insert")
  local nargs = select("#", ...)
  if nargs == 2 then
    local pos = checkint((...), 2, "insert")
    if pos < 1 or pos > n + 1 then argerror(2, "insert", "position out of bounds") end
    charge(span(pos, n))
  elseif nargs ~= 1 then
    error("wrong number of arguments to 'insert'", 2)
  end
  return tbl_insert(t, ...)
end

local function safe_remove(t, pos)
  local n = checktable(t, 1, "remove")
  pos = checkint(pos, 2, "remove", n)
  if pos ~= n and (pos < 1 or pos > n + 1) then argerror(2, "remove", "position out of bounds") end
  charge(span(pos, n))
  return tbl_remove(t, pos)
end

local function safe_concat(t, sep, i, j)
  local n = checktable(t, 1, "concat")
  if sep ~= nil then sep = checkstring(sep, 2, "concat") end
  i = checkint(i, 3, "concat", 1)
  j = checkint(j, 4, "concat", n)
  charge(2 * span(i, j))
  return reraise(real_pcall(tbl_concat, t, sep or "", i, j))
end

local function safe_unpack(t, i, j)
  local n = checktable(t, 1, "unpack")
  i = checkint(i, 2, "unpack", 1)
  j = checkint(j, 3, "unpack", n)
  charge(span(i, j))
  return reraise(real_pcall(tbl_unpack, t, i, j))
end

local function safe_move(a1, f, e, t, a2)
  checktable(a1, 1, "move")
  f = checkint(f, 2, "move")
  e = checkint(e, 3, "move")
  t = checkint(t, 4, "move")
  if a2 ~= nil then checktable(a2, 5, "move") end
  if e >= f then
    -- Checked before subtracting, so the count below cannot wrap around.
    if f <= 0 and e >= maxinteger + f then argerror(3, "move", "too many elements to move") end
    charge(2 * span(f, e))
  end
  return reraise(real_pcall(tbl_move, a1, f, e, t, a2))
end

------------------------------------------------------------------------------------------
-- Strings: no find/match/gmatch/gsub (a pattern can take n^4 time inside one C call:
-- docs/sandbox.md, Work inside C functions), no dump, pack or unpack; rep capped; the rest
-- charged by size.

local function safe_rep(s, n, sep)
  s = checkstring(s, 1, "rep")
  n = checkint(n, 2, "rep")
  if sep ~= nil then sep = checkstring(sep, 3, "rep") end
  if n <= 0 then return "" end
  if n > REP_BYTES then
    error(str_format("string.rep count %d exceeds the limit of %d", n, REP_BYTES), 2)
  end
  local bytes = (#s + (sep and #sep or 0)) * n   -- n <= 2^20, strings < max_memory: no overflow
  if bytes > REP_BYTES then
    error(str_format("string.rep result of %d bytes exceeds the limit of %d", bytes, REP_BYTES), 2)
  end
  charge(n + bytes / 16)
  return str_rep(s, n, sep)
end

-- Charged by the size of the result, after the fact: one call costs at most a few ms (strings
-- are bounded by max_memory), and the charge stops a loop of them.
local function sized(fn, fname, per_byte)
  return function(s)
    s = checkstring(s, 1, fname)
    local r = fn(s)
    charge(#r * per_byte)
    return r
  end
end

local function safe_sub(s, i, j)
  s = checkstring(s, 1, "sub")
  i = checkint(i, 2, "sub")
  j = checkint(j, 3, "sub", -1)
  local r = str_sub(s, i, j)
  charge(#r / 16)
  return r
end

local function safe_byte(s, i, j)
  s = checkstring(s, 1, "byte")
  i = checkint(i, 2, "byte", 1)
  j = checkint(j, 3, "byte", i)
  charge(span(i, j))                    -- clipped by the real function; an overestimate is fine
  return str_byte(s, i, j)
end

-- Charged before (string arguments: "%d" converts a numeric string, ~1.7 ns per byte) and
-- after (the result).
local function safe_format(fmt, ...)
  fmt = checkstring(fmt, 1, "format")
  local n, bytes = select("#", ...), #fmt
  if n > 0 then
    local args = {...}
    for k = 1, n do
      local v = args[k]
      if type(v) == "string" then bytes = bytes + #v end
    end
  end
  charge(bytes / 4)
  local ok, r = real_pcall(str_format, fmt, ...)
  if not ok then return reraise(false, r) end
  charge(#r / 16)
  return r
end

-- Converting a long numeric string costs ~1.7 ns per byte (strtod); 4 MiB took 7 ms a call.
local function safe_tonumber(v, base)
  if type(v) == "string" and #v > 64 then charge(#v / 4) end
  return tonumber(v, base)
end

local function string_library()
  return {
    byte = safe_byte, char = string.char, format = safe_format, len = string.len,
    lower = sized(str_lower, "lower", 1 / 8), upper = sized(str_upper, "upper", 1 / 8),
    reverse = sized(str_reverse, "reverse", 1 / 16), sub = safe_sub,
    rep = safe_rep,
  }
end

local function coroutine_library()
  return {
    create = safe_create, resume = safe_resume, wrap = safe_wrap, yield = co_yield,
    status = co_status, isyieldable = co_isyieldable, running = co_running,
  }
end

------------------------------------------------------------------------------------------
-- log(...): the replacement for print. Arguments are rendered like print does (tostring,
-- tab-separated), cut to LOG_BYTES, made valid UTF-8, and handed to the Python sink; at most
-- LOG_MSGS per call, the rest only counted.

local function render(v)
  local tv = type(v)
  if tv == "string" then return v end
  if tv ~= "table" then return tostring(v) end
  local ok, s = real_pcall(tostring, v)     -- may run a user __tostring, under the hook
  if ok and type(s) == "string" then return s end
  if expired then error(TIMEOUT, 0) end
  return "<table: __tostring failed>"
end

local function clean(s)
  if #s > LOG_BYTES then s = str_sub(s, 1, LOG_BYTES - 12) .. " [truncated]" end
  if not utf8_len(s) then s = (str_gsub(s, "[\128-\255]", "?")) end
  return s
end

local function log_fn(...)
  logged = logged + 1
  if logged > LOG_MSGS then
    dropped = dropped + 1
    if logged == LOG_MSGS + 1 then
      sink(str_format("[log limit of %d messages per call reached; dropping the rest of this call]",
                      LOG_MSGS))
    end
    return
  end
  -- One pack, not select(k, ...) per argument: that copies all n arguments each time.
  local n = select("#", ...)
  local args = {...}
  local parts, size = {}, 0
  for k = 1, n do
    local s = render(args[k])
    if #s > LOG_BYTES then s = str_sub(s, 1, LOG_BYTES + 1) end   -- +1: clean() marks the cut
    parts[k] = s
    size = size + #s + 1
    if size > LOG_BYTES then break end
  end
  sink(clean(tbl_concat(parts, "\t")))
end

------------------------------------------------------------------------------------------
-- Raw conversion of results into values Python may touch (docs/sandbox.md, Results): no
-- metamethod of a user table ever runs outside the hook window, so only `next`, rawget and
-- type() are used here. Tables are copied into fresh plain tables of scalars.

local MAX_FIELDS, MAX_STRING, MAX_RESULTS = 256, 4096, 32

local BAD_STRING = "a string that is not valid UTF-8 or longer than " .. MAX_STRING .. " bytes"

local function bad_string(s)
  return #s > MAX_STRING or not utf8_len(s)
end

-- Returns the copy, or nil plus the offending key and a description.
local function scalar_copy(t)
  local copy, count = {}, 0
  local k, v = next(t)
  while k ~= nil do
    count = count + 1
    if count > MAX_FIELDS then return nil, "(table)", str_format("more than %d fields", MAX_FIELDS) end
    local tk = type(k)
    if tk == "string" then
      if bad_string(k) then return nil, "(key)", "a key that is not valid UTF-8 or too long" end
    elseif math_type(k) ~= "integer" then
      -- tostring only for numbers: a table key could carry a user __tostring.
      return nil, tk == "number" and tostring(k) or "(key)", "a " .. tk .. " key"
    end
    local tv = type(v)
    if tv == "string" then
      if bad_string(v) then return nil, k, BAD_STRING end
    elseif tv ~= "number" and tv ~= "boolean" then
      return nil, k, "a " .. tv
    end
    copy[k] = v
    k, v = next(t, k)
  end
  return copy
end

-- Status-first results: 0, n, v1..vn on success; 1, position, field, description otherwise.
local function convert(n, ...)
  if n > MAX_RESULTS then return 1, 0, nil, str_format("%d return values (limit %d)", n, MAX_RESULTS) end
  local out = {...}
  for i = 1, n do
    local v = out[i]
    local tv = type(v)
    if tv == "table" then
      local copy, field, what = scalar_copy(v)
      if not copy then return 1, i, field, what end
      out[i] = copy
    elseif tv == "string" then
      if bad_string(v) then return 1, i, nil, BAD_STRING end
    elseif tv ~= "nil" and tv ~= "number" and tv ~= "boolean" then
      return 1, i, nil, "a " .. tv
    end
  end
  return 0, n, tbl_unpack(out, 1, n)
end

local function finish(...)
  if expired then error(TIMEOUT, 0) end   -- never expected: every catch point rethrows
  local n = select("#", ...)
  if n == 1 then                        -- the common case, without packing
    local tv = type((...))
    if tv == "number" or tv == "boolean" or tv == "nil" then return 0, 1, ... end
  elseif n == 0 then
    return 0, 0
  end
  return convert(n, ...)
end

local function call_entry(name, ...)
  local f = rawget(env, name)
  if type(f) ~= "function" then return 2, name, type(f) end
  return finish(f(...))
end

------------------------------------------------------------------------------------------
-- The environment for user code. Each sandbox gets its own copies of the library tables;
-- the string metatable's __index gets a separate copy so that user edits to `string` cannot
-- change what host code reaches with method syntax.

local math_names = {
  "abs", "ceil", "floor", "fmod", "huge", "log", "exp", "max", "maxinteger", "min",
  "mininteger", "modf", "pi", "sqrt", "tointeger", "type", "ult", "sin", "cos", "tan",
  "asin", "acos", "atan",
}
local safe_math = {}
for _, name in next, math_names do safe_math[name] = math[name] end

env.assert, env.error, env.ipairs, env.next, env.pairs = assert, error, ipairs, next, pairs
env.select, env.tonumber, env.tostring, env.type = select, safe_tonumber, tostring, type
env.rawequal, env.rawget, env.rawlen, env.rawset = rawequal, rawget, rawlen, rawset
env.getmetatable, env.setmetatable = safe_getmetatable, safe_setmetatable
env.pcall, env.xpcall = safe_pcall, safe_xpcall
env._VERSION = _VERSION
env.log = log_fn
env.math = safe_math
env.string = string_library()
env.table = {
  concat = safe_concat, insert = safe_insert, move = safe_move, pack = table.pack,
  remove = safe_remove, sort = safe_sort, unpack = safe_unpack,
}
env.coroutine = coroutine_library()
env.os = {time = os.time, clock = clock}
env._G = env

local string_mt = real_getmetatable("")
string_mt.__index = string_library()
string_mt.__metatable = false
-- No string-to-number coercion in arithmetic ("10" + 1 is an error): in 5.4 it is done by
-- these metamethods, and converting a multi-MiB numeric string is one uncounted C call.
for _, event in next, {"__add", "__sub", "__mul", "__div", "__mod", "__pow", "__unm", "__idiv"} do
  string_mt[event] = nil
end

-- Host Lua keeps the real globals, minus everything that reaches the process or Python, and
-- with the timeout-safe pcall/xpcall/coroutine (host code runs under the same budget).
-- Removing `debug` also stops lupa from using debug.traceback as its message handler.
-- The registry's module table (package.loaded) keeps every library alive after its global
-- is gone; nothing can `require` here, so the ones removed or replaced go too, with the io
-- library's handles and metatable, which also live in the registry (memory: ~5 KB of the
-- ~23 KB of an empty runtime, in every runner).
local loaded, registry = package.loaded, debug.getregistry()
for _, name in next, {"debug", "io", "package", "require", "dofile", "loadfile", "load",
                      "collectgarbage", "print", "warn", "python"} do
  _G[name] = nil
  loaded[name] = nil
end
for _, key in next, {"_IO_input", "_IO_output", "FILE*", "_PRELOAD"} do registry[key] = nil end
_G.os = {time = os.time, clock = clock}
_G.pcall, _G.xpcall = safe_pcall, safe_xpcall
_G.coroutine = coroutine_library()
loaded.os, loaded.coroutine = nil, nil

------------------------------------------------------------------------------------------
-- Host closures returned to Python.

local function compile(src, name)
  local fn, err = load(src, "=" .. name, "t", env)
  if not fn then return nil, err end
  user_sources["=" .. name] = true
  return fn
end

-- Binary only for bytecode that Python compiled from the project's own host text and
-- stripped (sandbox._host_bytecode); user chunks go through `compile`, text only.
local function compile_host(src, name, binary)
  local fn, err = load(src, "=(host " .. name .. ")", binary == true and "b" or "t")
  if not fn then error(err, 0) end
  return fn
end

-- (expired, reason, chunk, line), and clears the timeout so the next call starts clean.
-- Python re-arms the hook with the bare C sethook before calling this.
local function take_state()
  ticks, firings, logged = 0, 0, 0      -- no `guarded` prologue: it would refuse while expired
  local e, r, s, l = expired, reason, where_src, where_line
  expired, reason, where_src, where_line = false, nil, nil, nil
  return e, r, s, l
end

local function function_at(source, line)
  local best, best_span, count = nil, huge, 0
  local k, v = next(env)
  while k ~= nil and count < 10000 do
    count = count + 1
    if type(k) == "string" and type(v) == "function" then
      local info = getinfo(v, "S")
      if info.source == source and info.linedefined <= line and line <= info.lastlinedefined then
        local span = info.lastlinedefined - info.linedefined
        if span < best_span then best, best_span = k, span end
      end
    end
    k, v = next(env, k)
  end
  return best
end

local function get_function(name)
  local f = rawget(env, name)
  if type(f) == "function" then return f end
  return nil, type(f)
end

local function protect(t, depth)
  if type(t) ~= "table" or protected[t] then return t end
  protected[t] = true
  if (depth or 0) < 8 then
    local k, v = next(t)
    while k ~= nil do
      protect(v, (depth or 0) + 1)
      k, v = next(t, k)
    end
  end
  return t
end

local function new_table() return protect({}) end

local function log_dropped() return dropped end

-- What host chunks receive as their first argument.
local host_api = {
  env = env, log = log_fn, protect = protect, new_table = new_table,
  scalar_copy = scalar_copy, charge = charge,
}

local function run_host(fn, ...) return fn(host_api, ...) end

debug_sethook(hook, "", EVERY)

return {
  sethook = debug_sethook, hook = hook, every = EVERY,
  compile = guarded(compile),
  run = guarded(function(f, ...) return finish(f(...)) end),
  exec = guarded(function(f, ...) f(...) end),
  call_entry = guarded(call_entry),
  convert_table = guarded(function(t) return convert(1, t) end),
  guarded = guarded(guarded),
  compile_host = guarded(compile_host),
  run_host = guarded(run_host),
  take_state = take_state,
  function_at = guarded(function_at),
  get_function = guarded(get_function),
  protect = guarded(protect),
  new_table = guarded(new_table),
  log_dropped = guarded(log_dropped),
}
