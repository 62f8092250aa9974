-- schedulers/ddpm.lua: DDPMScheduler (Ho et al. 2020), diffusers v0.27.2's config keys, defaults
-- and step arithmetic (float32, rounding like its 0-d tensor math), on the engine's tensor ops.
--
--   local s = ddpm.schedulers.DDPMScheduler{num_train_timesteps=200}
--   s:set_timesteps(200)
--   for _, t in ipairs(s:timestep_list()) do
--     local eps = unet(x, t, ...)
--     x = s:step(eps, t, x, {generator=g}).prev_sample
--   end
-- step() also accepts variance_noise= (the noise to add instead of drawing it), which makes a
-- step reproducible across random-number generators.
local B = require 'ddpm.schedulers.base'
local raise = require('ddpm.ffi').raise
local f32, sqrt32 = B.f32, B.sqrt32

local VARIANCE_TYPES = { 'fixed_small', 'fixed_small_log', 'fixed_large', 'fixed_large_log', 'learned',
  'learned_range' }

local DDPMScheduler = B.class({
  name = 'DDPMScheduler',
  config_spec = {
    { 'num_train_timesteps', 1000, 'int' },
    { 'beta_start', 0.0001, 'float' },
    { 'beta_end', 0.02, 'float' },
    { 'beta_schedule', 'linear', 'str', { 'linear', 'scaled_linear', 'squaredcos_cap_v2', 'sigmoid' } },
    { 'trained_betas', nil, 'list' },
    { 'variance_type', 'fixed_small', 'str', VARIANCE_TYPES },
    { 'clip_sample', true, 'bool' },
    { 'prediction_type', 'epsilon', 'str', B.PREDICTION_TYPES },
    { 'thresholding', false, 'bool' },
    { 'dynamic_thresholding_ratio', 0.995, 'float' },
    { 'clip_sample_range', 1.0, 'float' },
    { 'sample_max_value', 1.0, 'float' },
    { 'timestep_spacing', 'leading', 'str', B.SPACINGS },
    { 'steps_offset', 0, 'int' },
    { 'rescale_betas_zero_snr', false, 'bool' },
  },
})

function DDPMScheduler:init()
  local d = require 'ddpm'
  self.betas = B.make_betas(DDPMScheduler, self.config)
  self.alphas = 1 - self.betas
  self.alphas_cumprod, self._acp = B.cumprod32(self.alphas)
  self.init_noise_sigma = 1.0
  self.custom_timesteps = false
  self.num_inference_steps = nil
  self.timesteps = d.arange(self.config.num_train_timesteps - 1, -1, -1)
  self.variance_type = self.config.variance_type
end

-- set_timesteps(n) or set_timesteps{timesteps={...}} (custom, descending)
function DDPMScheduler:set_timesteps(n, opts)
  local d = require 'ddpm'
  local T = self.config.num_train_timesteps
  if type(n) == 'table' then n, opts = nil, n end
  local custom = opts and opts.timesteps
  local list
  if custom ~= nil then
    if n ~= nil then raise('DDPMScheduler:set_timesteps: pass either num_inference_steps or timesteps, not both') end
    if type(custom) ~= 'table' or #custom == 0 then raise('DDPMScheduler:set_timesteps: timesteps must be a non-empty list') end
    for i = 2, #custom do
      if custom[i] >= custom[i - 1] then raise('DDPMScheduler:set_timesteps: custom timesteps must be in descending order') end
    end
    if custom[1] >= T then
      raise(string.format('DDPMScheduler:set_timesteps: timesteps must start before num_train_timesteps (%d), got %d', T,
        custom[1]))
    end
    list = {}
    for i, t in ipairs(custom) do list[i] = t end
    self.custom_timesteps = true
    self.num_inference_steps = #list
  else
    B.check_num_inference_steps('DDPMScheduler', n, T)
    self.num_inference_steps = n
    self.custom_timesteps = false
    list = B.spaced_timesteps(self.config, n)
  end
  self._tlist = list
  self._index = {}
  for i, t in ipairs(list) do self._index[t] = i end
  self.timesteps = d.tensor(list, { dtype = d.int64, device = opts and opts.device })
end

function DDPMScheduler:previous_timestep(t)
  if self.custom_timesteps then
    local i = self._index[t]
    return i and self._tlist[i + 1] or -1
  end
  local n = self.num_inference_steps or self.config.num_train_timesteps
  return t - math.floor(self.config.num_train_timesteps / n)
end

function DDPMScheduler:scale_model_input(sample, timestep) return sample end

local function acp_at(self, t) return t >= 0 and self._acp[t + 1] or 1.0 end

-- The variance of step t as diffusers' _get_variance (a number; a tensor for 'learned*').
function DDPMScheduler:_get_variance(t, predicted_variance, variance_type)
  local prev_t = self:previous_timestep(t)
  local apt, app = acp_at(self, t), acp_at(self, prev_t)
  local beta_t = f32(1 - f32(apt / app))
  local variance = f32(f32(f32(1 - app) / f32(1 - apt)) * beta_t)
  -- the log of the variance is taken below, so keep it off zero
  variance = math.max(variance, f32(1e-20))
  variance_type = variance_type or self.config.variance_type
  if variance_type == 'fixed_small' then
    return variance
  elseif variance_type == 'fixed_small_log' then
    return f32(math.exp(f32(0.5 * f32(math.log(variance)))))
  elseif variance_type == 'fixed_large' then
    return beta_t
  elseif variance_type == 'fixed_large_log' then
    return f32(math.log(beta_t))
  elseif variance_type == 'learned' then
    return predicted_variance
  elseif variance_type == 'learned_range' then
    local min_log, max_log = f32(math.log(variance)), f32(math.log(beta_t))
    local frac = (predicted_variance + 1) / 2
    return frac * max_log + (1 - frac) * min_log
  end
  raise(string.format("DDPMScheduler: unknown variance_type '%s'", tostring(variance_type)))
end

-- step(model_output, timestep, sample, {generator=, variance_noise=}) ->
--   {prev_sample=, pred_original_sample=}
function DDPMScheduler:step(model_output, timestep, sample, opts)
  local name = 'DDPMScheduler'
  opts = opts or {}
  B.check_timesteps_set(self, name)
  local learned = self.variance_type == 'learned' or self.variance_type == 'learned_range'
  B.check_step_args(name, model_output, sample, learned)
  local t = B.timestep_number(name, timestep)
  if self._index[t] == nil then
    raise(string.format('DDPMScheduler.step: timestep %s is not one of the %d timesteps set by set_timesteps (%d, %d, ..., %d)',
      tostring(t), #self._tlist, self._tlist[1], self._tlist[2] or self._tlist[1], self._tlist[#self._tlist]))
  end
  local prev_t = self:previous_timestep(t)
  local predicted_variance
  local C = sample:size(1)
  if learned and model_output:size(1) == 2 * C then
    predicted_variance = model_output:narrow(1, C, C)
    model_output = model_output:narrow(1, 0, C)
  end
  -- 1. alphas, betas (float32 scalars)
  local apt, app = acp_at(self, t), acp_at(self, prev_t)
  local bpt, bpp = f32(1 - apt), f32(1 - app)
  local cat = f32(apt / app)
  local cbt = f32(1 - cat)
  -- 2. predicted x_0 (formula 15 of arXiv:2006.11239)
  local pt = self.config.prediction_type
  local x0
  if pt == 'epsilon' then
    x0 = (sample - model_output * sqrt32(bpt)) / sqrt32(apt)
  elseif pt == 'sample' then
    x0 = model_output
  elseif pt == 'v_prediction' then
    x0 = sample * sqrt32(apt) - model_output * sqrt32(bpt)
  else
    raise(string.format("DDPMScheduler.step: unknown prediction_type '%s'; expected one of 'epsilon', 'sample', "
      .. "'v_prediction'", tostring(pt)))
  end
  -- 3. clip or threshold x_0
  x0 = B.clip_x0(self.config, x0)
  -- 4-5. the posterior mean (formula 7)
  local c0 = f32(f32(sqrt32(app) * cbt) / bpt)
  local ct = f32(f32(sqrt32(cat) * bpp) / bpt)
  local prev = x0 * c0 + sample * ct
  -- 6. noise
  if t > 0 then
    local noise = opts.variance_noise
    if noise ~= nil and opts.generator ~= nil then
      raise('DDPMScheduler.step: pass either generator or variance_noise, not both')
    end
    if noise == nil then
      noise = require('ddpm').randn(model_output:shape(), { generator = opts.generator, dtype = model_output.dtype,
        device = model_output.device })
    end
    local vt = self.variance_type
    local v = self:_get_variance(t, predicted_variance)
    if vt == 'fixed_small_log' then
      prev = prev + noise * v
    elseif vt == 'learned_range' then
      prev = prev + (v * 0.5):exp() * noise
    elseif vt == 'learned' then
      prev = prev + (type(v) == 'number' and noise * sqrt32(v) or v:sqrt() * noise)
    elseif vt == 'fixed_large_log' then
      raise("DDPMScheduler.step: variance_type 'fixed_large_log' cannot be sampled (diffusers 0.27.2 takes the "
        .. 'square root of a log variance, which is NaN); it is accepted for config compatibility only')
    else
      prev = prev + noise * sqrt32(v)
    end
  end
  return { prev_sample = prev, pred_original_sample = x0 }
end

return DDPMScheduler
