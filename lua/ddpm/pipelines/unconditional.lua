-- pipelines/unconditional.lua: DDPMPipeline (≈ diffusers.DDPMPipeline), sampling an unconditional
-- UNet2DModel with any scheduler:
--
--   local pipe = ddpm.pipelines.DDPMPipeline(unet, scheduler)
--   local images = pipe{batch_size = 16, generator = 0, num_inference_steps = 50}.images
--   -- or pipe(16, {generator = 0})
local base = require 'ddpm.pipelines.base'
local raise = require('ddpm.ffi').raise

local Pipe = {}
Pipe.__index = Pipe
Pipe.name = 'DDPMPipeline'

local ALLOWED = { batch_size = true }
for k in pairs(base.COMMON_OPTS) do ALLOWED[k] = true end

function Pipe.new(unet, scheduler)
  if type(unet) ~= 'table' or type(unet.forward) ~= 'function' then raise('DDPMPipeline: unet must be a model (UNet2DModel)') end
  if type(scheduler) ~= 'table' or type(scheduler.step) ~= 'function' or type(scheduler.set_timesteps) ~= 'function' then
    raise('DDPMPipeline: scheduler must be a ddpm.schedulers scheduler (set_timesteps, step)')
  end
  return setmetatable({ unet = unet, scheduler = scheduler }, Pipe)
end

-- pipe{batch_size=1, generator=, num_inference_steps=, eta=, output_type=, callback=, progress=}
-- or pipe(batch_size, opts) -> {images = ...}
function Pipe:__call(a, b)
  local opts
  if type(a) == 'number' then
    local copy = {}
    for k, v in pairs(b or {}) do copy[k] = v end
    copy.batch_size = a
    opts = copy
  else
    opts = a or {}
  end
  opts = base.check_opts(opts, self.name, ALLOWED)
  local n = opts.batch_size or 1
  if type(n) ~= 'number' or n < 1 or n ~= math.floor(n) then
    raise('DDPMPipeline: batch_size must be a positive integer, got ' .. tostring(n))
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.generator = base.generator(opts.generator, self.name)
  local images = base.run_eval({ self.unet }, function()
    local x = base.initial_noise(self, n, o)
    x = base.denoise(self, x, o, function(inp, t) return self.unet(inp, t).sample end)
    return base.output(x, o, self.name)
  end)
  return { images = images }
end

function Pipe:to(device)
  self.unet:to(device)
  return self
end

function Pipe:save_pretrained(dir)
  require('ddpm.pipelines.loading').save(self, dir)
end

local M = {}
M.DDPMPipeline = setmetatable({ new = Pipe.new, class = Pipe }, {
  __call = function(_, ...) return Pipe.new(...) end,
})
M.Pipe = Pipe
return M
