-- models_fixtures.lua: helpers for the model parity specs: the fixtures' hash-init weights
-- (fixtures/README.md), fixture files, the label net, and activation capture through hooks.
local ddpm = require 'ddpm'
local ffi = require 'ffi'
local bit = require 'bit'
local cjson = require 'cjson'

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

function M.load(path) return (ddpm.load_safetensors(path)) end

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


-- parity(set, unet, emb_net): runs the fixture's forward/backward exactly as the reference did
-- (both nets in eval mode, encoder_hidden_states = emb_net(labels):unsqueeze(1), loss = MSE)
-- and returns {io=, out=, acts=, loss=, grads = {fixture key -> our gradient}}
function M.parity(set, unet, emb_net)
  local F = require 'ddpm.nn.functional'
  local io_ = M.load(M.fixtures .. '/' .. set .. '/io.safetensors')
  unet:eval()
  emb_net:eval()
  local names = {}
  for k in pairs(io_) do
    local n = k:match('^act%.(.*)$')
    if n then names[#names + 1] = n end
  end
  table.sort(names)
  local acts, remove = M.capture(unet, names)
  local sample = io_.sample:clone():requires_grad_(true)
  -- the label net's output goes in as a leaf so its gradient can be compared, then flows on
  -- into the label net (the chain rule in two steps, as one backward would do it)
  local ehs_graph = emb_net(io_.labels):unsqueeze(1)
  local ehs = ehs_graph:detach():requires_grad_(true)
  local out = unet(sample, io_.timesteps, ehs, { class_labels = io_.labels }).sample
  remove()
  local loss = F.mse_loss(out, io_.target)
  loss:backward()
  ehs_graph:backward(ehs.grad)
  local grads = {}
  for k in pairs(io_) do
    local n = k:match('^grad%.(.*)$')
    if n then
      if n == 'sample' then grads[k] = sample.grad
      elseif n == 'encoder_hidden_states' then grads[k] = ehs.grad
      elseif n:match('^emb_net%.') then grads[k] = emb_net:get_parameter(n:sub(9)).grad
      else grads[k] = unet:get_parameter(n).grad end
    end
  end
  return { io = io_, out = out, acts = acts, act_names = names, loss = loss, grads = grads,
    ehs = ehs_graph:detach() }
end

-- the standard checks of a parity result (busted asserts)
function M.check_parity(r, unet)
  local io_ = r.io
  -- encoder_hidden_states from the label net
  local d, m = M.maxdiff(r.ehs, io_.encoder_hidden_states)
  assert(d <= 1e-6 * math.max(1, m), string.format('encoder_hidden_states: max |diff| %g', d))
  -- the prediction: as close as the reference is to itself across thread counts (README)
  d, m = M.maxdiff(r.out, io_.out)
  -- (measured: seed 1.2e-6, tiny 1.8e-6; the reference differs from fp64 by up to 8.6e-7, this
  -- build's fp32 kernels by up to 1.5e-6)
  assert(d <= 1.5e-6 * math.max(1, m), string.format('out: max |diff| %g (max |out| %g)', d, m))
  for _, n in ipairs(r.act_names) do
    local a = r.acts[n]
    assert(a ~= nil, 'no activation recorded for ' .. n)
    assert(table.concat(a:shape(), 'x') == table.concat(io_['act.' .. n]:shape(), 'x'), 'act shape ' .. n)
    d, m = M.maxdiff(a, io_['act.' .. n])
    assert(d <= 1.5e-6 * math.max(1, m), string.format('act.%s: max |diff| %g (max %g)', n, d, m))
  end
  local l, el = r.loss:item(), io_.loss:item()
  assert(math.abs(l - el) <= 1e-6 * el, string.format('loss %.9g vs %.9g', l, el))
  local n = 0
  for k, g in pairs(r.grads) do
    n = n + 1
    local e = io_[k]
    assert(g ~= nil, 'no gradient for ' .. k)
    d, m = M.maxdiff(g, e)
    if m == 0 then
      assert(d == 0, k .. ' should be exactly zero, max |g| = ' .. d)
    else
      assert(d <= 4e-6 * m, string.format('%s: max |diff| %g > 4e-6 x max |value| %g', k, d, m))
    end
  end
  assert(n >= 10, 'too few gradients compared: ' .. n)
  -- a single key token: softmax is identically 1, so cross-attention's to_q/to_k get exactly 0
  local nx = 0
  for name, p in unet:named_parameters() do
    if name:match('attn2%.to_[qk]%.weight$') then
      nx = nx + 1
      assert(p.grad == nil or p.grad:abs():amax():item() == 0, name .. ' has a nonzero gradient')
    end
  end
  assert(nx > 0, 'no cross-attention found')
end

return M
