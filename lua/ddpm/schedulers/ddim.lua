-- schedulers/ddim.lua: DDIMScheduler (Song et al. 2020), diffusers v0.27.2's config keys,
-- defaults and step arithmetic (float32, rounding like its 0-d tensor math).
--
--   local s = ddpm.schedulers.DDIMScheduler.from_config(ddpm_scheduler.config)
--   s:set_timesteps(50)
--   x = s:step(eps, t, x, {eta=0}).prev_sample     -- eta=1: DDPM-like noise (generator= or variance_noise=)
local B = require 'ddpm.schedulers.base'
local raise = require('ddpm.ffi').raise
local f32, sqrt32 = B.f32, B.sqrt32

local DDIMScheduler = B.class({
  name = 'DDIMScheduler',
  config_spec = {
    { 'num_train_timesteps', 1000, 'int' },
    { 'beta_start', 0.0001, 'float' },
    { 'beta_end', 0.02, 'float' },
    { 'beta_schedule', 'linear', 'str', { 'linear', 'scaled_linear', 'squaredcos_cap_v2' } },
    { 'trained_betas', nil, 'list' },
    { 'clip_sample', true, 'bool' },
    { 'set_alpha_to_one', true, 'bool' },
    { 'steps_offset', 0, 'int' },
    { 'prediction_type', 'epsilon', 'str', B.PREDICTION_TYPES },
    { 'thresholding', false, 'bool' },
    { 'dynamic_thresholding_ratio', 0.995, 'float' },
    { 'clip_sample_range', 1.0, 'float' },
    { 'sample_max_value', 1.0, 'float' },
    { 'timestep_spacing', 'leading', 'str', B.SPACINGS },
    { 'rescale_betas_zero_snr', false, 'bool' },
  },
})

function DDIMScheduler:init()
  local d = require 'ddpm'
  self.betas = B.make_betas(DDIMScheduler, self.config)
  self.alphas = 1 - self.betas
  self.alphas_cumprod, self._acp = B.cumprod32(self.alphas)
  -- the alpha product "before" step 0: 1, or acp[0] (set_alpha_to_one=false)
  self._final_acp = self.config.set_alpha_to_one and 1.0 or self._acp[1]
  self.final_alpha_cumprod = d.tensor(self._final_acp)
  self.init_noise_sigma = 1.0
  self.num_inference_steps = nil
  self.timesteps = d.arange(self.config.num_train_timesteps - 1, -1, -1)
end

function DDIMScheduler:set_timesteps(n, opts)
  local d = require 'ddpm'
  local T = self.config.num_train_timesteps
  B.check_num_inference_steps('DDIMScheduler', n, T)
  self.num_inference_steps = n
  local list = B.spaced_timesteps(self.config, n)
  self._tlist = list
  self._index = {}
  for i, t in ipairs(list) do self._index[t] = i end
  self.timesteps = d.tensor(list, { dtype = d.int64, device = opts and opts.device })
end

function DDIMScheduler:scale_model_input(sample, timestep) return sample end

local function acp_at(self, t) return t >= 0 and self._acp[t + 1] or self._final_acp end

function DDIMScheduler:previous_timestep(t)
  return t - math.floor(self.config.num_train_timesteps / self.num_inference_steps)
end

-- (1 - acp_prev) / (1 - acp_t) * (1 - acp_t / acp_prev), a float32 number
function DDIMScheduler:_get_variance(t, prev_t)
  local apt, app = acp_at(self, t), acp_at(self, prev_t)
  local bpt, bpp = f32(1 - apt), f32(1 - app)
  return f32(f32(bpp / bpt) * f32(1 - f32(apt / app)))
end

-- step(model_output, timestep, sample, {eta=0, use_clipped_model_output=false, generator=,
--   variance_noise=}) -> {prev_sample=, pred_original_sample=}
function DDIMScheduler:step(model_output, timestep, sample, opts)
  local name = 'DDIMScheduler'
  opts = opts or {}
  B.check_timesteps_set(self, name)
  B.check_step_args(name, model_output, sample, false)
  local t = B.timestep_number(name, timestep)
  if self._index[t] == nil then
    raise(string.format('DDIMScheduler.step: timestep %s is not one of the %d timesteps set by set_timesteps (%d, %d, ..., %d)',
      tostring(t), #self._tlist, self._tlist[1], self._tlist[2] or self._tlist[1], self._tlist[#self._tlist]))
  end
  local eta = opts.eta or 0.0
  if type(eta) ~= 'number' or eta < 0 then raise('DDIMScheduler.step: eta must be a non-negative number, got ' .. tostring(eta)) end
  -- 1. previous step (= t - T/n)
  local prev_t = self:previous_timestep(t)
  -- 2. alphas, betas
  local apt, app = acp_at(self, t), acp_at(self, prev_t)
  local bpt = f32(1 - apt)
  local sa, sb = sqrt32(apt), sqrt32(bpt)
  -- 3. predicted x_0 and epsilon (formula 12 of arXiv:2010.02502)
  local pt = self.config.prediction_type
  local x0, eps
  if pt == 'epsilon' then
    x0 = (sample - model_output * sb) / sa
    eps = model_output
  elseif pt == 'sample' then
    x0 = model_output
    eps = (sample - x0 * sa) / sb
  elseif pt == 'v_prediction' then
    x0 = sample * sa - model_output * sb
    eps = model_output * sa + sample * sb
  else
    raise(string.format("DDIMScheduler.step: unknown prediction_type '%s'; expected one of 'epsilon', 'sample', "
      .. "'v_prediction'", tostring(pt)))
  end
  -- 4. clip or threshold x_0
  x0 = B.clip_x0(self.config, x0)
  -- 5. sigma_t(eta) (formula 16)
  local variance = self:_get_variance(t, prev_t)
  local std = f32(f32(eta) * sqrt32(variance))
  if opts.use_clipped_model_output then eps = (sample - x0 * sa) / sb end
  -- 6-7. direction pointing to x_t, and x_{t-1} without noise (formula 12)
  local dir_coef = sqrt32(f32(f32(1 - app) - f32(std * std)))
  local prev = x0 * sqrt32(app) + eps * dir_coef
  if eta > 0 then
    local noise = opts.variance_noise
    if noise ~= nil and opts.generator ~= nil then
      raise('DDIMScheduler.step: pass either generator or variance_noise, not both')
    end
    if noise == nil then
      noise = require('ddpm').randn(model_output:shape(), { generator = opts.generator, dtype = model_output.dtype,
        device = model_output.device })
    end
    prev = prev + noise * std
  end
  return { prev_sample = prev, pred_original_sample = x0 }
end

return DDIMScheduler
