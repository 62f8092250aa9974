-- sample_full.lua: seconds for a full DDPM sampling run in ddpm-lua (the same work as
-- tests/peer/sample_full.py): 200 steps of UNet forward + DDPMScheduler.step for 20 images
-- (4 per class), label embedding included.
--   ddpm-lua scripts/bench/sample_full.lua --per-class 4 --reps 1 [--inference-steps 200] [--threads N]
package.path = (arg[0]:match('^(.*)/[^/]*$') or '.') .. '/?.lua;' .. package.path
local B = require 'common'
local ddpm = B.ddpm
local usage = 'usage: ddpm-lua sample_full.lua [--per-class 4] [--reps 1] [--inference-steps 200] [--warmup 2] [--threads N]'
local o = B.parse({ per_class = 4, reps = 1, inference_steps = B.TRAIN_TIMESTEPS }, arg, usage)
B.setup(o)

local emb, unet, sched = B.build(false)
local batch = o.per_class * B.NUM_CLASSES
local classes = {}
for i = 1, batch do classes[i] = math.floor((i - 1) / o.per_class) end
local labels = B.one_hot_of(classes)

local function run()
  sched:set_timesteps(o.inference_steps)
  local x = ddpm.randn(batch, 3, 16, 16)
  ddpm.no_grad(function()
    local ehs = emb(labels):unsqueeze(1)
    for _, t in ipairs(sched:timestep_list()) do
      local eps = unet(x, t, ehs).sample
      x = sched:step(eps, t, x).prev_sample
    end
  end)
  return x
end

ddpm.no_grad(function() -- warm-up: a few forwards, not a whole run
  local ehs = emb(labels):unsqueeze(1)
  for _ = 1, o.warmup do unet(ddpm.randn(batch, 3, 16, 16), 10, ehs) end
end)
local times, cpu = {}, {}
for i = 1, o.reps do
  local t0, c0 = B.now(), B.cpu_time()
  run():sum():item()
  times[i], cpu[i] = B.now() - t0, B.cpu_time() - c0
end
B.emit('sample_full', batch, times, o, { inference_steps = o.inference_steps, cpu_seconds = B.median(cpu) })
