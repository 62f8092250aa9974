-- sample_step.lua: seconds per sampling step in ddpm-lua (the same work as
-- tests/peer/sample_step.py): UNet forward under no_grad plus DDPMScheduler.step at batch 20
-- (4 images per class), over timesteps spread across the schedule.
--   ddpm-lua scripts/bench/sample_step.lua --batch 20 --steps 10 --warmup 2 [--threads N] [--bf16]
-- --bf16 runs the UNet under ddpm.amp.autocast('cpu', {dtype=ddpm.bfloat16}) (the scheduler step in
-- float32), as tests/peer/sample_step.py --bf16 does with torch.autocast.
package.path = (arg[0]:match('^(.*)/[^/]*$') or '.') .. '/?.lua;' .. package.path
local B = require 'common'
local ddpm = B.ddpm
local usage = 'usage: ddpm-lua sample_step.lua [--batch 20] [--steps 10] [--warmup 2] [--threads N] [--bf16] [--profile]'
local o = B.parse({ batch = 20, steps = 10, bf16 = false, profile = false }, arg, usage)
B.setup(o)

local emb, unet, sched = B.build(false)
sched:set_timesteps(B.TRAIN_TIMESTEPS)
local ts = sched:timestep_list()
local classes = {}
for i = 1, o.batch do classes[i] = (i - 1) % B.NUM_CLASSES end
local labels = B.one_hot_of(classes)
local x = ddpm.randn(o.batch, 3, 16, 16)
local name = o.bf16 and 'sample_step_bf16' or 'sample_step'
local function eps_of(xt, t, ehs)
  if not o.bf16 then return unet(xt, t, ehs).sample end
  return ddpm.amp.autocast('cpu', { dtype = ddpm.bfloat16 }, function() return unet(xt, t, ehs).sample end):float()
end
local prof = (o.profile or os.getenv('DDPM_PROFILE') == '1') and require('ddpm.utils.profile')
local times, cpu = {}, {}
local since
local ok, err = pcall(ddpm.no_grad, function()
  local ehs = o.bf16 and ddpm.amp.autocast('cpu', { dtype = ddpm.bfloat16 }, function() return emb(labels) end):unsqueeze(1)
    or emb(labels):unsqueeze(1)
  for i = 0, o.warmup + o.steps - 1 do
    if prof and i == o.warmup then prof.enable(true) since = prof.snapshot() end
    local t = ts[(i * 37) % #ts + 1]
    local t0, c0 = B.now(), B.cpu_time()
    local eps = eps_of(x, t, ehs)
    x = sched:step(eps, t, x).prev_sample
    x:sum():item() -- the step's result is materialised (no-op for eager CPU kernels)
    if i >= o.warmup then times[#times + 1], cpu[#cpu + 1] = B.now() - t0, B.cpu_time() - c0 end
  end
end)
if not ok then -- a kernel without bfloat16 support is reported instead of a time
  if not o.bf16 then error(err, 0) end
  B.unsupported(name, o.batch, o, 'bfloat16 autocast on this device: ' .. tostring(err):gsub('^.-: ', '', 1))
  return
end
local extra = { cpu_seconds = B.median(cpu), precision = o.bf16 and 'bf16-autocast' or 'fp32' }
if prof then
  local total = 0
  for _, v in ipairs(times) do total = total + v end
  extra.profile = prof.report({ wall = total, steps = o.steps }, since)
end
B.emit(name, o.batch, times, o, extra)
