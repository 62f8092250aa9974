-- sample_step.lua: seconds per sampling step in ddpm-lua (the same work as
-- tests/peer/sample_step.py): UNet forward under no_grad plus DDPMScheduler.step at batch 20
-- (4 images per class), over timesteps spread across the schedule.
--   ddpm-lua scripts/bench/sample_step.lua --batch 20 --steps 10 --warmup 2 [--threads N]
package.path = (arg[0]:match('^(.*)/[^/]*$') or '.') .. '/?.lua;' .. package.path
local B = require 'common'
local ddpm = B.ddpm
local usage = 'usage: ddpm-lua sample_step.lua [--batch 20] [--steps 10] [--warmup 2] [--threads N] [--profile]'
local o = B.parse({ batch = 20, steps = 10, profile = false }, arg, usage)
B.setup(o)

local emb, unet, sched = B.build(false)
sched:set_timesteps(B.TRAIN_TIMESTEPS)
local ts = sched:timestep_list()
local classes = {}
for i = 1, o.batch do classes[i] = (i - 1) % B.NUM_CLASSES end
local labels = B.one_hot_of(classes)
local x = ddpm.randn(o.batch, 3, 16, 16)
local prof = (o.profile or os.getenv('DDPM_PROFILE') == '1') and require('ddpm.utils.profile')
local times, cpu = {}, {}
local since
ddpm.no_grad(function()
  local ehs = emb(labels):unsqueeze(1)
  for i = 0, o.warmup + o.steps - 1 do
    if prof and i == o.warmup then prof.enable(true) since = prof.snapshot() end
    local t = ts[(i * 37) % #ts + 1]
    local t0, c0 = B.now(), B.cpu_time()
    local eps = unet(x, t, ehs).sample
    x = sched:step(eps, t, x).prev_sample
    x:sum():item() -- the step's result is materialised (no-op for eager CPU kernels)
    if i >= o.warmup then times[#times + 1], cpu[#cpu + 1] = B.now() - t0, B.cpu_time() - c0 end
  end
end)
local extra = { cpu_seconds = B.median(cpu) }
if prof then
  local total = 0
  for _, v in ipairs(times) do total = total + v end
  extra.profile = prof.report({ wall = total, steps = o.steps }, since)
end
B.emit('sample_step', o.batch, times, o, extra)
