-- parity_margin.lua: how much of the fixture tolerances the fp32 engine uses, and how far it and
-- the PyTorch reference each are from an fp64 run of the same model (a kernel that moves the
-- engine's fp32 result away from fp64 eats the margin of tests/lua/models_parity_*_spec.lua).
--   DDPM_SHARED=/work/shared ddpm-lua scripts/bench/parity_margin.lua [seed|tiny]
package.path = 'tests/lua/?.lua;' .. package.path
local ddpm = require 'ddpm'
local F = ddpm.nn.functional
local X = require 'models_fixtures'

local function build(set, dtype)
  local unet, emb_sd
  if set == 'seed' then
    local unet_sd
    unet_sd, emb_sd = X.hash_state_dicts('seed')
    unet = ddpm.models.UNet2DConditionModel.from_config(X.fixtures .. '/seed/unet/config.json')
    unet:load_state_dict(unet_sd)
  else
    unet = ddpm.models.UNet2DConditionModel.from_pretrained(X.fixtures .. '/tiny/unet')
    emb_sd = X.load(X.fixtures .. '/tiny/emb_net.safetensors')
  end
  local emb = X.label_net()
  emb:load_state_dict(emb_sd)
  return unet:to(dtype), emb:to(dtype)
end

-- forward + backward as the fixture harness ran it, in the given dtype
local function run(set, dtype)
  local unet, emb = build(set, dtype)
  unet:eval()
  emb:eval()
  local io_ = X.load(X.fixtures .. '/' .. set .. '/io.safetensors')
  local names = {}
  for k in pairs(io_) do
    local n = k:match('^act%.(.*)$')
    if n then names[#names + 1] = n end
  end
  table.sort(names)
  local acts, remove = X.capture(unet, names)
  local sample = io_.sample:to(dtype):requires_grad_(true)
  local ehs = emb(io_.labels:to(dtype)):unsqueeze(1):detach():requires_grad_(true)
  local out = unet(sample, io_.timesteps, ehs).sample
  remove()
  local loss = F.mse_loss(out, io_.target:to(dtype))
  loss:backward()
  local grads = {}
  for k in pairs(io_) do
    local n = k:match('^grad%.(.*)$')
    if n and n ~= 'sample' and n ~= 'encoder_hidden_states' and not n:match('^emb_net%.') then
      grads[k] = unet:get_parameter(n).grad
    end
  end
  grads['grad.sample'] = sample.grad
  return { io = io_, out = out, acts = acts, names = names, grads = grads }
end

local function rel(a, b, scale)
  local d = (a:double() - b:double()):abs():amax():item()
  return d / scale
end

for _, set in ipairs(arg[1] and { arg[1] } or { 'seed', 'tiny' }) do
  local r32, r64 = run(set, ddpm.float32), run(set, ddpm.float64)
  local io_ = r32.io
  print(string.format('%s: share of the tolerance used (ours-ref), and |ours-fp64|, |ref-fp64| in tolerance units', set))
  local function line(what, a, ref, a64, tol, scale)
    print(string.format('  %-58s %6.3f  ours-fp64 %6.3f  ref-fp64 %6.3f', what, rel(a, ref, scale) / tol,
      rel(a, a64, scale) / tol, rel(ref, a64, scale) / tol))
  end
  local m = math.max(1, io_.out:abs():amax():item())
  line('out', r32.out, io_.out, r64.out, 1.5e-6, m)
  for _, n in ipairs(r32.names) do
    local e = io_['act.' .. n]
    line('act.' .. n, r32.acts[n], e, r64.acts[n], 1.5e-6, math.max(1, e:abs():amax():item()))
  end
  local keys = {}
  for k in pairs(r32.grads) do keys[#keys + 1] = k end
  table.sort(keys)
  local worst, wk = 0, nil
  for _, k in ipairs(keys) do
    local e = io_[k]
    local mx = e:abs():amax():item()
    if mx > 0 then
      local q = rel(r32.grads[k], e, mx) / 4e-6
      if q > worst then worst, wk = q, k end
      if q > 0.5 then line(k, r32.grads[k], e, r64.grads[k], 4e-6, mx) end
    end
  end
  print(string.format('  worst gradient: %s at %.3f of the tolerance', wk, worst))
end
