-- repl.lua: the interactive loop of ddpm-lua: readline editing and history, multi-line input
-- (an unfinished chunk keeps reading), auto-printing of results, errors with a traceback.
local M = {}

local function pack(...) return { n = select('#', ...), ... } end

local function is_incomplete(err)
  return err and (err:match("<eof>$") or err:match("<eof>'?$")) ~= nil
end

-- Compile a chunk, first as an expression (to auto-print its value), then as statements.
local function compile(src)
  local f = loadstring('return ' .. src, '=stdin')
  if f then return f end
  local g, err = loadstring(src, '=stdin')
  return g, err
end

local function traceback(e)
  local msg = type(e) == 'string' and e or tostring(e)
  local tb = debug.traceback(msg, 2)
  -- the frames below the REPL's own pcall are noise for a user
  tb = tb:gsub('\n[^\n]*repl%.lua:.*$', '')
  return tb
end

function M.eval(src, out)
  out = out or io.stdout
  local f, err = compile(src)
  if not f then return false, err end
  local res = pack(xpcall(f, traceback))
  if not res[1] then
    out:write(tostring(res[2]), '\n')
    return true, nil, false
  end
  if res.n > 1 then
    local parts = {}
    for i = 2, res.n do parts[#parts + 1] = tostring(res[i]) end
    out:write(table.concat(parts, '\t'), '\n')
  end
  return true, nil, true
end

function M.run()
  local host = _DDPM_HOST
  local tty = host.isatty(0)
  local histfile = (os.getenv('HOME') or '.') .. '/.ddpm_lua_history'
  if tty then
    host.read_history(histfile)
    io.stdout:write(string.format('ddpm-lua %s (LuaJIT) -- tensors with autograd; ddpm is preloaded. Ctrl-D exits.\n',
      host.version))
  end
  local pending
  while true do
    local line = host.readline(pending and '>> ' or '> ')
    if line == nil then break end
    if line:sub(1, 1) == '=' and not pending then line = 'return ' .. line:sub(2) end
    local src = pending and (pending .. '\n' .. line) or line
    if src:match('^%s*$') then
      pending = nil
    else
      local f, err = compile(src)
      if not f and is_incomplete(err) then
        pending = src
      else
        pending = nil
        if tty then host.add_history(src) end
        if not f then
          io.stdout:write(err, '\n')
        else
          local ok, e = pcall(M.eval, src)
          if not ok then io.stdout:write(tostring(e), '\n') end
        end
      end
    end
    io.stdout:flush()
  end
  if tty then
    io.stdout:write('\n')
    host.write_history(histfile)
  end
end

return M
