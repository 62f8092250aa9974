-- training/ema.lua: the exponential moving average of the weights a run keeps with --ema
-- (diffusers' EMAModel with warm-up, as its train scripts' --use_ema).  The averaged weights are
-- what a checkpoint's pipeline holds and what samples use; the trainer keeps training the raw ones.
-- Averaged copies of the models are built on the side, so the live training weights are never
-- swapped out (a Ctrl-C during sampling or saving cannot leave them averaged).
local ddpm = require 'ddpm'
local label_net = require 'ddpm.pipelines.label_net'

local M = {}
local E = {}
E.__index = E

-- new(params, {decay=0.9999}) over the trainer's parameter list (unet's, then the label net's)
function M.new(params, opts)
  opts = opts or {}
  local self = setmetatable({}, E)
  self.model = ddpm.optim.EMAModel(params, { decay = opts.decay or 0.9999, use_ema_warmup = true,
    power = opts.power or 2 / 3 })
  return self
end

function E:step(params) self.model:step(params) end

-- before an optimizer step: remember what tells whether the EMA update of this step ran
function E:mark(witness_idx)
  local sh = self.model.shadow_params
  self._before = {}
  for k, i in ipairs(witness_idx) do self._before[k] = sh[i]:detach():clone() end
  self._count = self.model.optimization_step
  self._idx = witness_idx
end

-- after an interrupt that found the optimizer's update done: make the EMA's done exactly once
function E:settle(params)
  local sh = self.model.shadow_params
  local ran = false
  for k, i in ipairs(self._idx or {}) do
    if not ddpm.equal(self._before[k], sh[i]) then ran = true end
  end
  if ran then
    self.model.optimization_step = self._count + 1
  else
    self.model.optimization_step = self._count
    self.model:step(params)
  end
end

-- the module's state dict with parameters params[first], params[first + 1], ... replaced by
-- their averages; returns it and the index after the module's last parameter
function E:averaged_state(module, first)
  local sd = module:state_dict()
  local i = first
  for name in module:named_parameters() do
    sd[name] = self.model.shadow_params[i]
    i = i + 1
  end
  return sd, i
end

-- a fresh module of the same architecture holding the averaged weights
function E:copy(module, first)
  local sd, after = self:averaged_state(module, first)
  -- building draws initial weights; keep the default generator where training left it
  local rng = ddpm.get_rng_state()
  local copy
  local cls = getmetatable(module)
  if module.config and cls.from_config then
    copy = cls(module.config, { generator = ddpm.Generator() })
  else
    copy = label_net.build(label_net.describe(module))
  end
  ddpm.set_rng_state(rng)
  local dev
  for _, p in module:named_parameters() do dev = p.device break end
  if dev and dev.type ~= 'cpu' then copy:to(dev) end
  copy:load_state_dict(sd, { strict = true })
  copy:eval()
  return copy, after
end

-- what a checkpoint keeps beside the averaged weights (the shadow tensors are the pipeline's)
function E:state()
  local m = self.model
  return { optimization_step = m.optimization_step, decay = m.decay, power = m.power, inv_gamma = m.inv_gamma,
    use_ema_warmup = m.use_ema_warmup, min_decay = m.min_decay, update_after_step = m.update_after_step }
end

-- restore from a checkpoint: the averages from the pipeline's weights (state dicts by name),
-- in the trainer's parameter order
function E:load(state, modules_and_sds)
  local shadow = {}
  for _, ms in ipairs(modules_and_sds) do
    for name in ms[1]:named_parameters() do
      local t = ms[2][name]
      if t == nil then error('EMA: the checkpoint lacks the averaged weight ' .. name, 0) end
      shadow[#shadow + 1] = t
    end
  end
  local sd = {}
  for k, v in pairs(state) do sd[k] = v end
  sd.shadow_params = shadow
  self.model:load_state_dict(sd)
end

return M
