-- formats_helpers.lua: shared helpers of the io_* and data_* specs: temp dirs, raw file bytes,
-- corrupting copies, running ddpm-lua in a child process.
local M = {}

function M.tmpdir(tag)
  local base = os.tmpname()
  os.remove(base)
  local d = base .. '-' .. (tag or 'ddpm')
  assert(os.execute("mkdir -p '" .. d .. "'") == 0 or true)
  return d
end

function M.rmdir(d)
  if d and d:match('^/tmp/') then os.execute("chmod -R u+w '" .. d .. "' 2>/dev/null; rm -rf '" .. d .. "'") end
end

function M.read(path)
  local f = assert(io.open(path, 'rb'))
  local s = f:read('*a')
  f:close()
  return s
end

function M.write(path, s)
  local f = assert(io.open(path, 'wb'))
  f:write(s)
  f:close()
end

function M.exists(path)
  local f = io.open(path, 'rb')
  if f then f:close() return true end
  return false
end

-- u64 little-endian
function M.u64(n)
  local b = {}
  for i = 1, 8 do
    b[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  return table.concat(b)
end

-- Expect fn to raise an error whose message contains every given plain substring.
function M.raises(fn, ...)
  local ok, err = pcall(fn)
  assert(not ok, 'expected an error, got success')
  err = tostring(err)
  for i = 1, select('#', ...) do
    local s = select(i, ...)
    if not err:find(s, 1, true) then error(string.format('error message %q lacks %q', err, s), 2) end
  end
  return err
end

-- Run a Lua snippet in a fresh ddpm-lua; returns the exit status (true on success) and output.
function M.run_child(code, shell_prefix)
  local exe = os.getenv('DDPM_LUA') or 'build/ddpm-lua'
  local script, sh = os.tmpname(), os.tmpname()
  M.write(script, code)
  M.write(sh, string.format("%s\n'%s' '%s' 2>&1\necho \"rc=$?\"\n", shell_prefix or '', exe, script))
  local p = io.popen("bash '" .. sh .. "'")
  local out = p:read('*a')
  p:close()
  os.remove(script)
  os.remove(sh)
  local rc = tonumber(out:match('rc=(%d+)%s*$'))
  return rc, out
end

function M.sha256(path)
  local p = io.popen("sha256sum '" .. path .. "'")
  local out = p:read('*a')
  p:close()
  return out:match('^(%x+)')
end

return M
