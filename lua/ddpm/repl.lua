-- repl.lua: the interactive loop of ddpm-lua: readline editing, history and tab completion (from
-- the host, _DDPM_HOST), multi-line input, auto-printed results, short tracebacks, Ctrl-C.
local M = {}

local host = rawget(_G, '_DDPM_HOST')

local function pack(...) return { n = select('#', ...), ... } end

-- ---- compiling a line ---------------------------------------------------------------------------------
-- A chunk is incomplete when the parser ran out of input: keep reading lines (lua.c's rule).
local function is_incomplete(err)
  return err ~= nil and err:find("'<eof>'$") ~= nil
end

-- Each line is its own chunk, so a top-level `local x = ...` would vanish at once: the REPL
-- makes the first statement's `local` a global definition instead (as Python's REPL keeps names).
local function globalize(src)
  local rest = src:match('^%s*local%s+(function%s.*)$')
  if rest then return rest end
  local names, tail = src:match('^%s*local%s+([%a_][%w_%s,]-)%s*(=[^=].*)$')
  if names and names:match('^[%a_][%w_]*%s*[,%s%w_]*$') then return names .. ' ' .. tail end
  return src
end
M.globalize = globalize

-- Compile as an expression first (its values are printed), then as statements.  The wrapper
-- keeps the user's call out of tail position, so an error still names "stdin:1", and collects
-- the value count, so trailing nils print too.
local EXPR = "return (function(...) return select('#', ...), ... end)("
function M.compile(src, chunkname)
  chunkname = chunkname or '=stdin'
  local shown = src:match('^%s*=(.*)$')
  if shown then
    local f = loadstring(EXPR .. shown .. '\n)', chunkname)
    if f then return f, nil, true end
    -- the wrapper's closing parenthesis hides an unfinished expression: ask without it
    local _, err = loadstring('return ' .. shown, chunkname)
    return nil, err, true, is_incomplete(err)
  end
  local f = loadstring(EXPR .. src .. '\n)', chunkname)
  if f then return f, nil, true end
  local g, err = loadstring(globalize(src), chunkname)
  return g, err, false, is_incomplete(err)
end

-- ---- printing values ----------------------------------------------------------------------------------
local ok_ddpm, ddpm = pcall(require, 'ddpm')
local function is_tensor(v) return ok_ddpm and ddpm.is_tensor(v) end

local function is_ident(k) return type(k) == 'string' and k:match('^[%a_][%w_]*$') ~= nil end

-- Plain tables print as Lua constructors ({2, 3} for a shape), shallowly and cut short;
-- anything with __tostring (tensors, modules) prints itself.
local function repr(v, depth, inner)
  local tv = type(v)
  if tv == 'string' then return inner and string.format('%q', v) or v end
  if is_tensor(v) then
    local s = tostring(v)
    if inner and s:find('\n') then
      return string.format('<tensor %s %s>', table.concat(v:shape(), 'x'), tostring(v.dtype))
    end
    return s
  end
  if tv ~= 'table' then return tostring(v) end
  local mt = getmetatable(v)
  if mt and mt.__tostring then return tostring(v) end
  if depth > 2 then return '{...}' end
  local parts, n, limit = {}, #v, 30
  for i = 1, math.min(n, limit) do parts[#parts + 1] = repr(v[i], depth + 1, true) end
  local keys = {}
  for k in pairs(v) do
    if not (type(k) == 'number' and k >= 1 and k <= n and k == math.floor(k)) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == 'string' or ta == 'number' then return a < b end
    return tostring(a) < tostring(b)
  end)
  for _, k in ipairs(keys) do
    if #parts >= limit then break end
    local ks = is_ident(k) and k or ('[' .. repr(k, depth + 1, true) .. ']')
    parts[#parts + 1] = ks .. ' = ' .. repr(v[k], depth + 1, true)
  end
  local total = math.min(n, limit) + #keys
  if n > limit or total > #parts then parts[#parts + 1] = '...' end
  return '{' .. table.concat(parts, ', ') .. '}'
end

-- The results of one evaluation, tab-separated as print() would write them.
function M.format_values(res, first, last)
  local parts = {}
  for i = first, last do parts[#parts + 1] = repr(res[i], 1, false) end
  return table.concat(parts, '\t')
end

-- ---- evaluating -------------------------------------------------------------------------------------------
local function handler(e)
  if host then return host.traceback(e) end
  if type(e) == 'table' and e.exit_code then return e end
  return debug.traceback(tostring(e), 2)
end

local function error_text(e)
  if type(e) == 'table' and e.exit_code then return tostring(e.message or '') end
  return tostring(e)
end

-- Run one complete chunk: print its values to out, or its error to err.  Returns true when it ran
-- without error.
function M.eval(src, out, err)
  out, err = out or io.stdout, err or io.stderr
  local f, cerr, is_expr = M.compile(src)
  if not f then
    err:write(cerr, '\n')
    return false
  end
  local res = pack(xpcall(f, handler))
  if not res[1] then
    err:write(error_text(res[2]), '\n')
    return false
  end
  -- an expression chunk returns its value count first; a statement chunk may `return` values too
  local first = is_expr and 3 or 2
  if res.n >= first then out:write(M.format_values(res, first, res.n), '\n') end
  return true
end

-- ---- tab completion ----------------------------------------------------------------------------------------
local KEYWORDS = { 'and', 'break', 'do', 'else', 'elseif', 'end', 'false', 'for', 'function', 'goto', 'if', 'in',
  'local', 'nil', 'not', 'or', 'repeat', 'return', 'then', 'true', 'until', 'while' }

local function add_keys(t, prefix, seen, out, methods_only)
  local guard = 0
  while type(t) == 'table' and guard < 8 do
    for k, v in pairs(t) do
      if is_ident(k) and k:sub(1, #prefix) == prefix and not seen[k] and (not methods_only or type(v) == 'function') then
        seen[k] = true
        out[#out + 1] = k
      end
    end
    local mt = getmetatable(t)
    t = mt and type(mt.__index) == 'table' and mt.__index or nil
    guard = guard + 1
  end
end

-- Candidates for the word before the cursor: "ddpm.ra" -> ddpm.rand, ddpm.randint, ...;
-- "t:su" -> t:sum, t:sub, ...; a bare word -> globals and keywords.
function M.complete(text)
  local path, sep, prefix = text:match('^(.-)([%.:])([%a_]?[%w_]*)$')
  local names, seen = {}, {}
  if not path then
    add_keys(_G, text, seen, names)
    for _, k in ipairs(KEYWORDS) do
      if k:sub(1, #text) == text and not seen[k] then names[#names + 1] = k end
    end
    table.sort(names)
    return names
  end
  local obj = _G
  for part in path:gmatch('[^%.]+') do
    if not is_ident(part) or type(obj) ~= 'table' and not is_tensor(obj) then return {} end
    local ok, v = pcall(function() return obj[part] end)
    if not ok or v == nil then return {} end
    obj = v
  end
  if path:find('[^%w_%.]') then return {} end
  if is_tensor(obj) then
    add_keys(ddpm.Tensor, prefix, seen, names, sep == ':')
    if sep == '.' then
      for _, k in ipairs({ 'dtype', 'device', 'grad', 'requires_grad', 'is_leaf', 'grad_fn' }) do
        if k:sub(1, #prefix) == prefix and not seen[k] then names[#names + 1] = k end
      end
    end
  else
    add_keys(obj, prefix, seen, names, sep == ':')
  end
  table.sort(names)
  for i, k in ipairs(names) do names[i] = path .. sep .. k end
  return names
end

-- ---- the loop -----------------------------------------------------------------------------------------------------
local function history_path()
  local p = os.getenv('DDPM_HISTORY')
  if p then return p ~= '' and p or nil end
  local home = os.getenv('HOME')
  return home and home ~= '' and (home .. '/.ddpm_lua_history') or nil
end
M.history_path = history_path

local function file_exists(p)
  local f = io.open(p, 'r')
  if f then f:close() end
  return f ~= nil
end

local function is_exit_word(s)
  local w = s:match('^%s*(%a+)%s*%(?%s*%)?%s*$')
  return (w == 'exit' or w == 'quit') and rawget(_G, w) == nil
end

function M.run()
  if not host then error('ddpm.repl.run needs the ddpm-lua executable (its line editing)', 2) end
  local tty = host.isatty(0)
  local hist = tty and history_path() or nil
  if hist and file_exists(hist) then host.read_history(hist) end
  host.completer = M.complete
  if tty then
    io.stdout:write(string.format('ddpm-lua %s (%s) -- ddpm is preloaded; =expr prints, Ctrl-C interrupts, Ctrl-D exits\n',
      host.version, jit and jit.version or _VERSION))
  end
  local pending, last_entry
  while true do
    local line, why = host.readline(pending and '>> ' or '> ')
    if line == nil and why ~= 'interrupt' then break end
    if line == nil then
      pending = nil -- Ctrl-C at the prompt drops the unfinished input
    elseif not pending and is_exit_word(line) then
      break
    else
      local src = pending and (pending .. '\n' .. line) or line
      if src:match('^%s*$') then
        pending = nil
      else
        -- a Ctrl-C landing between evaluations raises here; the loop must survive it
        local ok, e = pcall(function()
          local f, err, _, incomplete = M.compile(src)
          if not f and incomplete then
            pending = src
            return
          end
          pending = nil
          if tty and src ~= last_entry then
            host.add_history(src, hist)
            last_entry = src
          end
          M.eval(src)
        end)
        if not ok then
          pending = nil
          io.stderr:write(error_text(e), '\n')
        end
      end
    end
    io.stdout:flush()
    io.stderr:flush()
  end
  if tty then io.stdout:write('\n') end
  if hist then host.truncate_history(hist, 1000) end
  host.completer = nil
end

return M
