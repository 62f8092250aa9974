-- pipelines/base.lua: what every sampling pipeline shares (≈ diffusers' DiffusionPipeline): the
-- denoising loop driven only through the scheduler interface (set_timesteps, init_noise_sigma,
-- scale_model_input, step), so any scheduler works; generator handling; output conversion;
-- progress bar and per-step callback; device and train/eval bookkeeping.
local ddpm = require 'ddpm'
local T = require 'ddpm.tensor'
local raise = require('ddpm.ffi').raise

local M = {}

M.OUTPUT_TYPES = { tensor = true, pt = true, uint8 = true, png = true, raw = true }

-- generator=: a ddpm.Generator, a seed (a fresh generator, so a number gives the same images
-- every time), or nil (the default generator)
function M.generator(g, who)
  if g == nil then return nil end
  if type(g) == 'number' then
    if g < 0 or g ~= math.floor(g) then raise(who .. ': generator seed must be a non-negative integer, got ' .. g) end
    return ddpm.Generator():manual_seed(g)
  end
  if not ddpm.is_generator(g) then
    raise(who .. ': generator must be a ddpm.Generator or a seed (integer), got ' .. type(g))
  end
  return g
end

-- the device and dtype of a module's parameters
function M.module_device(m)
  for _, p in m:named_parameters() do return p.device, p.dtype end
  return ddpm.device('cpu'), ddpm.float32
end

-- default number of inference steps: the full chain for DDPM (as diffusers' DDPMPipeline), 50
-- for the few-step solvers, never more than the training chain
function M.default_steps(scheduler)
  local n = scheduler.config.num_train_timesteps
  if scheduler.name == 'DDPMScheduler' then return n end
  return math.min(50, n)
end

local function check_opts(opts, who, allowed)
  if opts == nil then return {} end
  if type(opts) ~= 'table' then raise(who .. ': options must be a table such as {num_inference_steps=50}, got ' .. type(opts)) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      raise(string.format("%s: unknown option '%s'; expected some of: %s", who, tostring(k), table.concat(names, ', ')))
    end
  end
  return opts
end
M.check_opts = check_opts

M.COMMON_OPTS = { generator = true, num_inference_steps = true, eta = true, output_type = true, callback = true,
  callback_steps = true, progress = true, path = true, nrow = true, scale = true, row_labels = true, latents = true,
  return_dict = true, cuda_graph = true }

-- denoise(pipe, x, opts, predict): the reverse process from x (already shaped [B, C, H, W] at the
-- scheduler's unit noise scale) with predict(model_input, t) -> the model output
function M.denoise(pipe, x, opts, predict)
  local s = pipe.scheduler
  local n = opts.num_inference_steps or M.default_steps(s)
  if type(n) ~= 'number' or n < 1 or n ~= math.floor(n) then
    raise(pipe.name .. ': num_inference_steps must be a positive integer, got ' .. tostring(n))
  end
  local eta = opts.eta or 0
  if type(eta) ~= 'number' or eta < 0 then raise(pipe.name .. ': eta must be a non-negative number, got ' .. tostring(eta)) end
  local cb, every = opts.callback, opts.callback_steps or 1
  if cb ~= nil and type(cb) ~= 'function' then raise(pipe.name .. ': callback must be a function(i, t, sample)') end
  s:set_timesteps(n, { device = x.device })
  local ts = s:timestep_list()
  x = x * s.init_noise_sigma
  local step_opts = { generator = opts.generator }
  if s.name == 'DDIMScheduler' then step_opts.eta = eta end
  local show = opts.progress
  if show == nil then show = true end
  local bar
  if show then
    bar = require('ddpm.utils.progress')(nil, { total = #ts, desc = type(show) == 'string' and show or 'sampling',
      unit = 'step', leave = false })
  end
  -- on CUDA the model call of every step is replayed as a CUDA graph (cuda_graph=false: eager)
  local graphs = require 'ddpm.utils.cuda_graphs'
  local close
  if graphs.wanted(opts.cuda_graph, x.device) then predict, close = graphs.predictor(predict, pipe.name) end
  local function loop()
    for i, t in ipairs(ts) do
      local out = predict(s:scale_model_input(x, t), t)
      x = s:step(out, t, x, step_opts).prev_sample
      if cb and (i - 1) % every == 0 then cb(i - 1, t, x) end
      if bar then bar:update(1) end
    end
  end
  if close then
    -- the graphs' memory goes back to the allocator also when a step fails or Ctrl-C lands
    local ok, err = pcall(loop)
    close()
    if not ok then error(err, 0) end
  else
    loop()
  end
  if bar then bar:close() end
  return x
end

-- run(pipe, modules, fn): fn() under no_grad with the modules in eval mode, restoring each
-- module's mode afterwards (also on error, e.g. Ctrl-C during sampling inside a training run)
function M.run_eval(modules, fn)
  local modes = {}
  for i, m in ipairs(modules) do
    modes[i] = m.training
    m:eval()
  end
  local res = { pcall(ddpm.no_grad, fn) }
  for i, m in ipairs(modules) do if modes[i] then m:train() end end
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2)
end

-- model space [-1, 1] -> what output_type asks for; {images=, ...} as ImagePipelineOutput
function M.output(x, opts, who)
  local ot = opts.output_type or 'tensor'
  if not M.OUTPUT_TYPES[ot] then
    raise(string.format("%s: unknown output_type '%s'; expected 'tensor' (float [N, C, H, W] in [0, 1]), 'uint8' "
      .. "([N, H, W, C]), 'png' (a grid written to path=) or 'raw' (the model's [-1, 1] samples)", who, tostring(ot)))
  end
  if ot == 'raw' then return x end
  local img = (x / 2 + 0.5):clamp(0, 1)
  if ot == 'tensor' or ot == 'pt' then return img end
  local image = require 'ddpm.utils.image'
  if ot == 'uint8' then return image.to_uint8(img) end
  -- png: a grid on disk; the return value is the uint8 grid as written
  if type(opts.path) ~= 'string' then raise(who .. ": output_type 'png' needs path='file.png'") end
  return image.save_image(img, opts.path, { nrow = opts.nrow, scale = opts.scale, labels = opts.row_labels })
end

-- the shape of one sample from a UNet config
function M.sample_shape(unet, who)
  local c = unet.config
  local size = c.sample_size
  if size == nil or size == require('ddpm.models').None then
    raise(who .. ': the UNet config has no sample_size; pass latents= of the shape to generate')
  end
  local h, w = size, size
  if type(size) == 'table' then h, w = size[1], size[2] end
  return c.in_channels, h, w
end

-- initial noise, or the caller's latents (checked against the model)
function M.initial_noise(pipe, batch, opts)
  local dev, dtype = M.module_device(pipe.unet)
  local c, h, w = M.sample_shape(pipe.unet, pipe.name)
  if opts.latents ~= nil then
    local l = T.need_tensor(opts.latents, 'latents', pipe.name)
    local s = l:shape()
    if #s ~= 4 or s[1] ~= batch or s[2] ~= c then
      raise(string.format('%s: latents have shape [%s], expected [%d, %d, %d, %d]', pipe.name, table.concat(s, ', '), batch,
        c, h, w))
    end
    return l:to(dtype, dev)
  end
  return ddpm.randn({ batch, c, h, w }, { generator = opts.generator, dtype = dtype, device = dev })
end

return M
