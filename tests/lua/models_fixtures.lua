-- models_fixtures.lua: helpers for the model parity specs: the fixtures' hash-init weights
-- (fixtures/README.md), fixture files, the label net, and activation capture through hooks.
local ddpm = require 'ddpm'
local ffi = require 'ffi'
local bit = require 'bit'
local cjson = require 'cjson'
local st = require 'ddpm.models.st'

local M = {}

M.shared = os.getenv('DDPM_SHARED') or '/work/shared'
M.fixtures = M.shared .. '/fixtures'

function M.have(path)
  local f = io.open(path, 'rb')
  if f then f:close() return true end
  return false
end

-- exact uint32 arithmetic on LuaJIT's 32-bit bit ops: products split into 16-bit halves
local band, bxor, rshift, tobit = bit.band, bit.bxor, bit.rshift, bit.tobit
local function mul32(a, b)
  local alo, ahi = band(a, 0xffff), rshift(a, 16)
  local blo, bhi = band(b, 0xffff), rshift(b, 16)
  return tobit(((ahi * blo + alo * bhi) % 65536) * 65536 + alo * blo)
end
local K1, K2 = tobit(0x7feb352d), tobit(0x846ca68b)
local function lowbias32(x)
  x = bxor(x, rshift(x, 16))
  x = mul32(x, K1)
  x = bxor(x, rshift(x, 15))
  x = mul32(x, K2)
  x = bxor(x, rshift(x, 16))
  return x
end
M.lowbias32 = lowbias32

-- tensor j of the index: element i = offset + ldexp((h >> 8) * 2 - 2^24, -24 - k), h =
-- lowbias32(lowbias32(j + 1) + i), all uint32; the sum rounds once to float32 on the store
function M.hash_tensor(j, shape, offset, k)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local buf = ffi.new('float[?]', math.max(n, 1))
  local c = lowbias32(tobit(j + 1))
  local scale = 2 ^ (-24 - k)
  for i = 0, n - 1 do
    local h = lowbias32(tobit(c + i))
    local v = rshift(h, 8) * 2 - 16777216
    buf[i] = offset + v * scale
  end
  return ddpm.frombuffer(ffi.string(buf, 4 * n), shape, ddpm.float32)
end

function M.read_json(path)
  local f = assert(io.open(path, 'rb'))
  local v = cjson.decode(f:read('*a'))
  f:close()
  return v
end

-- the hash-init state dicts of a set: unet_sd, emb_sd
function M.hash_state_dicts(set)
  local idx = M.read_json(M.fixtures .. '/' .. set .. '/unet/weights_index.json')
  local function build(list)
    local sd = {}
    for _, e in ipairs(list) do sd[e.key] = M.hash_tensor(e.j, e.shape, e.offset, e.k) end
    return sd
  end
  return build(idx.unet), build(idx.emb_net)
end

function M.load(path) return (st.load(path)) end

-- the tutorial's label net: Linear(5, 64) - GELU - Linear(64, 64)
function M.label_net()
  local nn = ddpm.nn
  return nn.Sequential(nn.Linear(5, 64), nn.GELU(), nn.Linear(64, 64))
end

-- capture(model, names) -> table name -> output (first value), and a function removing the hooks
function M.capture(model, names)
  local acts, handles = {}, {}
  for _, name in ipairs(names) do
    local m = model:get_submodule(name)
    handles[#handles + 1] = m:register_forward_hook(function(_, _, out) acts[name] = out end)
  end
  return acts, function() for _, h in ipairs(handles) do h:remove() end end
end

-- max |a - e| and max |e|
function M.maxdiff(a, e)
  local d = (a:double() - e:double()):abs():amax():item()
  local m = e:double():abs():amax():item()
  return d, m
end

return M
