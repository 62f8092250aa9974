-- cuda_train_step.lua: milliseconds per training step of the reference job (UNet2DConditionModel,
-- 16x16 RGB, batch 128, Adam, MSE on the noise) on the GPU: eager float32, eager under bfloat16
-- autocast, and the float32 step captured as a CUDA graph and replayed.  Usage:
--   ddpm-lua scripts/bench/cuda_train_step.lua [batch] [steps]
local ddpm = require 'ddpm'
if not ddpm.cuda.is_available() then
  print('cuda_train_step: no CUDA GPU on this machine')
  return
end
local B, steps = tonumber(arg and arg[1]) or 128, tonumber(arg and arg[2]) or 20
local cfg = { sample_size = 16, in_channels = 3, out_channels = 3, layers_per_block = 2, block_out_channels = { 64, 128 },
  down_block_types = { 'DownBlock2D', 'CrossAttnDownBlock2D' }, up_block_types = { 'CrossAttnUpBlock2D', 'UpBlock2D' },
  encoder_hid_dim = 64, cross_attention_dim = 64 }
local F = ddpm.nn.functional
local x = ddpm.randn(B, 3, 16, 16, { device = 'cuda' })
local ehs = ddpm.randn(B, 1, 64, { device = 'cuda' })
local t = ddpm.randint(0, 200, { B }, { device = 'cuda' })
local noise = ddpm.randn(B, 3, 16, 16, { device = 'cuda' })

local function time(name, step, n)
  for _ = 1, 3 do step() end
  ddpm.cuda.synchronize()
  local a, b = ddpm.cuda.Event({ enable_timing = true }), ddpm.cuda.Event({ enable_timing = true })
  a:record()
  for _ = 1, n do step() end
  b:record()
  b:synchronize()
  print(string.format('%-34s %8.2f ms/step (batch %d)', name, a:elapsed_time(b) / n, B))
end

local function setup()
  local m = ddpm.models.UNet2DConditionModel(cfg):to('cuda')
  return m, ddpm.optim.Adam(m:parameters(), { lr = 1e-4 })
end

local m, opt = setup()
local function step()
  opt:zero_grad()
  local loss = F.mse_loss(m(x, t, ehs).sample, noise)
  loss:backward()
  opt:step()
  return loss
end
time('eager float32', step, steps)

local function step_bf16()
  opt:zero_grad()
  local loss = ddpm.autocast('cuda', { dtype = ddpm.bfloat16 }, function()
    return F.mse_loss(m(x, t, ehs).sample:float(), noise)
  end)
  loss:backward()
  opt:step()
  return loss
end
time('eager bfloat16 autocast', step_bf16, steps)

ddpm.backends.cuda.matmul.allow_tf32 = true
time('eager float32, TF32 matmul/conv', step, steps)
ddpm.backends.cuda.matmul.allow_tf32 = false

local function step_graphable()
  opt:zero_grad({ set_to_none = false })
  local loss = F.mse_loss(m(x, t, ehs).sample, noise)
  loss:backward()
  opt:step()
  return loss
end
local g = ddpm.cuda.graph(step_graphable, { warmup = 1 })
time('CUDA graph replay, float32', function() g:replay() end, steps)
print(string.format('peak memory allocated %.1f MiB, reserved %.1f MiB', ddpm.cuda.max_memory_allocated() / 2 ^ 20,
  ddpm.cuda.max_memory_reserved() / 2 ^ 20))
