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

-- ---- hand-made PNGs (stored deflate blocks), to test every colour type without external tools ----
local bit = require 'bit'
local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if bit.band(c, 1) ~= 0 then c = bit.bxor(0xEDB88320, bit.rshift(c, 1)) else c = bit.rshift(c, 1) end
  end
  crc_table[i] = c
end
local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = bit.bxor(crc_table[bit.band(bit.bxor(c, s:byte(i)), 0xFF)], bit.rshift(c, 8)) end
  return bit.bxor(c, 0xFFFFFFFF)
end
local function be32(n)
  n = n % 2 ^ 32
  return string.char(math.floor(n / 2 ^ 24) % 256, math.floor(n / 2 ^ 16) % 256, math.floor(n / 2 ^ 8) % 256, n % 256)
end
local function chunk(typ, data) return be32(#data) .. typ .. data .. be32(crc32(typ .. data)) end
local function zlib_stored(raw)
  local out, a, b = { '\120\1' }, 1, 0
  for i = 1, #raw do
    a = (a + raw:byte(i)) % 65521
    b = (b + a) % 65521
  end
  local pos = 1
  repeat
    local part = raw:sub(pos, pos + 65534)
    pos = pos + #part
    local final = pos > #raw and 1 or 0
    out[#out + 1] = string.char(final, #part % 256, math.floor(#part / 256), 255 - #part % 256, 255 - math.floor(#part / 256)) .. part
  until pos > #raw
  out[#out + 1] = be32(b * 65536 + a)
  return table.concat(out)
end
M.chunk = chunk
-- png{w=, h=, color=, depth=, rows={scanline strings without filter byte}, chunks={{type, data}}, interlace=}
function M.png(o)
  local raw = {}
  for _, r in ipairs(o.rows) do raw[#raw + 1] = '\0' .. r end
  local extra = {}
  for _, c in ipairs(o.chunks or {}) do extra[#extra + 1] = chunk(c[1], c[2]) end
  return '\137PNG\r\n\26\n' ..
    chunk('IHDR', be32(o.w) .. be32(o.h) .. string.char(o.depth or 8, o.color, 0, 0, o.interlace or 0)) ..
    table.concat(extra) .. chunk('IDAT', zlib_stored(table.concat(raw))) .. chunk('IEND', '')
end

return M
