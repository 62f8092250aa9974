-- train_step.lua: seconds per training step of the reference job in ddpm-lua (the same work as
-- tests/peer/train_step.py): noise, random timesteps, add_noise, label net + UNet forward, MSE on
-- the noise, backward, Adam step; synthetic data.
--   ddpm-lua scripts/bench/train_step.lua --batch 128 --steps 5 --warmup 2 [--threads N] [--bf16]
-- --bf16 runs the label net + UNet forward under ddpm.amp.autocast('cpu', {dtype=ddpm.bfloat16}), as
-- tests/peer/train_step.py --bf16 runs it under torch.autocast('cpu', dtype=torch.bfloat16).
-- DDPM_PROFILE=1 (or --profile) adds the per-op time table of the timed steps to the JSON line.
package.path = (arg[0]:match('^(.*)/[^/]*$') or '.') .. '/?.lua;' .. package.path
local B = require 'common'
local ddpm = B.ddpm
local F = ddpm.nn.functional
local usage = 'usage: ddpm-lua train_step.lua [--batch 128] [--steps 5] [--warmup 2] [--threads N] [--bf16] [--profile]'
local o = B.parse({ batch = 128, steps = 5, bf16 = false, profile = false }, arg, usage)
B.setup(o)
local name = o.bf16 and 'train_step_bf16' or 'train_step'

local autocast = ddpm.amp.autocast -- ddpm.autocast: torch.autocast('cpu', dtype=torch.bfloat16)

local emb, unet, sched = B.build(true)
local params = unet:parameters()
for _, p in ipairs(emb:parameters()) do params[#params + 1] = p end
local opt = ddpm.optim.Adam(params, { lr = 1e-4 })
local x, labels = B.synthetic_batch(o.batch)

local function forward(xt, t)
  local ehs = emb(labels):unsqueeze(1)
  return unet(xt, t, ehs).sample
end

local function step()
  local noise = ddpm.randn(x:shape())
  local t = ddpm.randint(0, B.TRAIN_TIMESTEPS, { o.batch })
  local xt = sched:add_noise(x, noise, t)
  local pred
  if o.bf16 then
    pred = autocast('cpu', { dtype = ddpm.bfloat16 }, forward, xt, t):float()
  else
    pred = forward(xt, t)
  end
  local loss = F.mse_loss(pred, noise)
  opt:zero_grad()
  loss:backward()
  opt:step()
  return loss
end

if o.bf16 then -- a kernel without bfloat16 support is reported instead of a time
  local ok, err = pcall(step)
  if not ok then
    B.unsupported(name, o.batch, o, 'bfloat16 autocast on this device: ' .. tostring(err):gsub('^.-: ', '', 1))
    return
  end
end
for _ = 1, o.warmup do step() end
local prof = (o.profile or os.getenv('DDPM_PROFILE') == '1') and require('ddpm.utils.profile')
if prof then prof.reset(); prof.enable(true) end
local times, cpu = {}, {}
local loss
for i = 1, o.steps do
  local t0, c0 = B.now(), B.cpu_time()
  loss = step()
  loss = loss:item()
  times[i], cpu[i] = B.now() - t0, B.cpu_time() - c0
end
local extra = { precision = o.bf16 and 'bf16-autocast' or 'fp32', gflop_per_image = 2.83, loss = loss,
  cpu_seconds = B.median(cpu) }
if prof then
  local total = 0
  for _, v in ipairs(times) do total = total + v end
  extra.profile = prof.report({ wall = total, steps = o.steps })
  prof.enable(false)
end
B.emit(name, o.batch, times, o, extra)
