-- gpu_bench.lua: the reference job on the GPU, as the tutorial runs it: training images/s at a
-- batch (noise, random timesteps, add_noise, label net + UNet, MSE, backward, Adam) and the time to
-- sample 20 images (4 per class) in 200 DDPM steps, eager and as CUDA graphs, float32 and bfloat16
-- autocast.  Prints one JSON line per measurement (read by scripts/bench/gpu_compare.sh).
--   ddpm-lua scripts/bench/gpu_bench.lua [--batch 128] [--steps 30] [--sample-steps 200]
local ddpm = require 'ddpm'
local json = require 'ddpm.io.json'

local args = ddpm.cli.parse(arg, {
  description = 'GPU training and sampling throughput of the reference job',
  options = {
    { '--batch', type = 'integer', default = 128, help = 'training batch size' },
    { '--steps', type = 'integer', default = 30, help = 'timed training steps per mode' },
    { '--sample-steps', type = 'integer', default = 200, help = 'DDPM steps when sampling' },
    { '--device', type = 'string', default = 'cuda', help = "'cuda', or 'cpu' for a dry run of the code paths" },
    { '--modes', type = 'string', default = 'eager-fp32,eager-bf16,graph-fp32,graph-bf16',
      help = 'comma-separated subset of eager-fp32, eager-bf16, graph-fp32, graph-bf16' },
  },
})
local DEV = args.device
local on_gpu = DEV ~= 'cpu'
if on_gpu and not ddpm.cuda.is_available() then
  print(json.encode({ name = 'gpu_bench', error = 'no CUDA GPU on this machine' }))
  return
end
local nn, F = ddpm.nn, ddpm.nn.functional
local B = args.batch
local CFG = { sample_size = 16, in_channels = 3, out_channels = 3, layers_per_block = 2, block_out_channels = { 64, 128 },
  down_block_types = { 'DownBlock2D', 'CrossAttnDownBlock2D' }, up_block_types = { 'CrossAttnUpBlock2D', 'UpBlock2D' },
  encoder_hid_dim = 64 }
local device = on_gpu and ddpm.cuda.get_device_name(0) or 'cpu'

local function emit(rec)
  rec.device = device
  print(json.encode(rec))
  io.stdout:flush()
end

local function models()
  ddpm.manual_seed(0)
  local emb = nn.Sequential(nn.Linear(5, 64), nn.GELU(), nn.Linear(64, 64), nn.Unsqueeze(1)):to(DEV)
  local unet = ddpm.models.UNet2DConditionModel(CFG):to(DEV)
  local params = {}
  for _, p in ipairs(unet:parameters()) do params[#params + 1] = p end
  for _, p in ipairs(emb:parameters()) do params[#params + 1] = p end
  return emb, unet, ddpm.optim.Adam(params, { lr = 1e-4 })
end

local function one_hot_batch(n)
  local idx = {}
  for i = 1, n do idx[i] = (i - 1) % 5 end
  return F.one_hot(ddpm.tensor(idx, { dtype = ddpm.int64 }), 5):float():to(DEV)
end

-- ms per call of fn over n calls, timed with CUDA events after a warm-up
local function time_ms(fn, n, warm)
  for _ = 1, warm or 3 do fn() end
  if not on_gpu then
    local t0 = os.clock()
    for _ = 1, n do fn() end
    return (os.clock() - t0) * 1000 / n
  end
  ddpm.cuda.synchronize()
  local a, b = ddpm.cuda.Event({ enable_timing = true }), ddpm.cuda.Event({ enable_timing = true })
  a:record()
  for _ = 1, n do fn() end
  b:record()
  b:synchronize()
  return a:elapsed_time(b) / n
end

local function train_mode(mode)
  local emb, unet, opt = models()
  local sched = ddpm.schedulers.DDPMScheduler({ num_train_timesteps = 200 })
  local x = (ddpm.rand(B, 3, 16, 16) * 2 - 1):to(DEV)
  local labels = one_hot_batch(B)
  local bf16 = mode:match('bf16') ~= nil
  local function step()
    local noise = ddpm.randn({ B, 3, 16, 16 }, { device = DEV })
    local t = ddpm.randint(0, 200, { B }, { device = DEV })
    local xt = sched:add_noise(x, noise, t)
    local loss
    if bf16 then
      loss = ddpm.autocast(DEV, { dtype = ddpm.bfloat16 }, function()
        return F.mse_loss(unet(xt, t, emb(labels)).sample:float(), noise)
      end)
    else
      loss = F.mse_loss(unet(xt, t, emb(labels)).sample, noise)
    end
    opt:zero_grad({ set_to_none = false })
    loss:backward()
    opt:step()
    return loss
  end
  local run = step
  if mode:match('^graph') then
    local g = ddpm.cuda.graph(step, { warmup = 2 })
    run = function() g:replay() end
  end
  local ms = time_ms(run, args.steps)
  emit({ name = 'train_step', impl = 'ddpm-lua', mode = mode, batch = B, ms_per_step = ms, images_per_s = B / ms * 1000,
    peak_mib = on_gpu and ddpm.cuda.max_memory_allocated() / 2 ^ 20 or nil })
end

local function sample_mode(mode)
  local emb, unet = models()
  unet:eval()
  emb:eval()
  local sched = ddpm.schedulers.DDPMScheduler({ num_train_timesteps = 200 })
  sched:set_timesteps(args.sample_steps)
  local ts = sched:timestep_list()
  local labels = one_hot_batch(20)
  local bf16 = mode:match('bf16') ~= nil
  local gen = ddpm.Generator():manual_seed(0)
  local x = ddpm.randn({ 20, 3, 16, 16 }, { device = DEV, generator = gen })
  local ehs = ddpm.no_grad(function() return emb(labels) end)
  local tt = ddpm.zeros({ 20 }, { dtype = ddpm.int64, device = DEV })
  local function unet_eps(xx, t)
    if bf16 then
      return ddpm.autocast(DEV, { dtype = ddpm.bfloat16 }, function() return unet(xx, t, ehs).sample:float() end)
    end
    return unet(xx, t, ehs).sample
  end
  local function run_eager()
    ddpm.no_grad(function()
      local xx = x
      for _, t in ipairs(ts) do
        local eps = unet_eps(xx, t)
        xx = sched:step(eps, t, xx, { generator = gen }).prev_sample
      end
      return xx
    end)
  end
  local run = run_eager
  if mode:match('^graph') then
    -- one graph per denoising step shape: the UNet forward with a device-resident timestep; the
    -- scheduler's tiny update stays eager
    local xin = x:clone()
    local eps_out
    local g = ddpm.cuda.graph(function()
      eps_out = ddpm.no_grad(function() return unet_eps(xin, tt) end)
      return eps_out
    end, { warmup = 2 })
    run = function()
      ddpm.no_grad(function()
        local xx = x
        for _, t in ipairs(ts) do
          xin:copy_(xx)
          tt:fill_(t)
          g:replay()
          xx = sched:step(eps_out, t, xx, { generator = gen }).prev_sample
        end
      end)
    end
  end
  local ms = time_ms(run, 3, 1)
  emit({ name = 'sample_20', impl = 'ddpm-lua', mode = mode, steps = args.sample_steps, seconds = ms / 1000 })
end

for mode in args.modes:gmatch('[^,]+') do
  local ok, err = pcall(train_mode, mode)
  if not ok then emit({ name = 'train_step', impl = 'ddpm-lua', mode = mode, error = tostring(err) }) end
  collectgarbage()
  ok, err = pcall(sample_mode, mode)
  if not ok then emit({ name = 'sample_20', impl = 'ddpm-lua', mode = mode, error = tostring(err) }) end
  collectgarbage()
  if on_gpu then ddpm.cuda.empty_cache() end
end
