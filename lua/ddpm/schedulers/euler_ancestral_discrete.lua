-- schedulers/euler_ancestral_discrete.lua: EulerAncestralDiscreteScheduler (ancestral Euler
-- sampling, Karras et al. 2022 / k-diffusion), diffusers v0.27.2's config keys and update.
-- Timesteps are float32 (fractional with 'linspace' spacing) and the model input must be scaled:
--
--   s:set_timesteps(30)
--   local x = ddpm.randn(shape) * s.init_noise_sigma
--   for _, t in ipairs(s:timestep_list()) do
--     local eps = unet(s:scale_model_input(x, t), t, ...)
--     x = s:step(eps, t, x, {generator=g}).prev_sample
--   end
local B = require 'ddpm.schedulers.base'
local T = require 'ddpm.tensor'
local raise = require('ddpm.ffi').raise
local f32, sqrt32 = B.f32, B.sqrt32

local Euler = B.class({
  name = 'EulerAncestralDiscreteScheduler',
  config_spec = {
    { 'num_train_timesteps', 1000, 'int' },
    { 'beta_start', 0.0001, 'float' },
    { 'beta_end', 0.02, 'float' },
    { 'beta_schedule', 'linear', 'str', { 'linear', 'scaled_linear', 'squaredcos_cap_v2' } },
    { 'trained_betas', nil, 'list' },
    { 'prediction_type', 'epsilon', 'str', B.PREDICTION_TYPES },
    { 'timestep_spacing', 'linspace', 'str', B.SPACINGS },
    { 'steps_offset', 0, 'int' },
    { 'rescale_betas_zero_snr', false, 'bool' },
  },
})

-- train sigmas sqrt((1 - acp) / acp), float32 numbers by timestep (index t + 1)
local function train_sigmas(self)
  local r = {}
  for i, a in ipairs(self._acp) do r[i] = sqrt32(f32(f32(1 - a) / a)) end
  return r
end

local function set_sigmas(self, sig, ts)
  local d = require 'ddpm'
  self._sig = sig
  self.sigmas = d.tensor(sig)
  local mx = 0
  for _, s in ipairs(sig) do if s > mx then mx = s end end
  if self.config.timestep_spacing == 'linspace' or self.config.timestep_spacing == 'trailing' then
    self.init_noise_sigma = mx
  else
    self.init_noise_sigma = sqrt32(f32(f32(mx * mx) + 1))
  end
  self._tlist = ts
end

function Euler:init()
  local d = require 'ddpm'
  local c = self.config
  self.betas = B.make_betas(Euler, c)
  self.alphas = 1 - self.betas
  self.alphas_cumprod, self._acp = B.cumprod32(self.alphas)
  local n = c.num_train_timesteps
  if c.rescale_betas_zero_snr then
    self._acp[n] = 2 ^ -24
    self.alphas_cumprod = d.tensor(self._acp)
  end
  local ts = train_sigmas(self)
  local sig = {}
  for i = 1, n do sig[i] = ts[n + 1 - i] end
  sig[n + 1] = 0
  local lin = B.np_linspace(0, n - 1, n)
  local rev = {}
  for i = 1, n do rev[i] = lin[n + 1 - i] end
  set_sigmas(self, sig, rev)
  self.timesteps = d.tensor(rev, { dtype = d.float64 })
  self.num_inference_steps = nil
  self.is_scale_input_called = false
  self._step_index = nil
  self._begin_index = nil
end

function Euler:step_index() return self._step_index end
function Euler:begin_index() return self._begin_index end
function Euler:set_begin_index(i) self._begin_index = i or 0 end

function Euler:set_timesteps(n, opts)
  local d = require 'ddpm'
  local c = self.config
  local Tn = c.num_train_timesteps
  B.check_num_inference_steps('EulerAncestralDiscreteScheduler', n, Tn)
  self.num_inference_steps = n
  local ts = {}
  if c.timestep_spacing == 'linspace' then
    local ls = B.np_linspace(0, Tn - 1, n)
    for i = 1, n do ts[i] = f32(ls[n + 1 - i]) end
  elseif c.timestep_spacing == 'leading' then
    local ratio = math.floor(Tn / n)
    for i = 1, n do ts[i] = f32((n - i) * ratio) + c.steps_offset end
  else
    local ar = B.np_arange(Tn, 0, -(Tn / n))
    for i = 1, #ar do ts[i] = f32(B.rint(ar[i])) - 1 end
  end
  B.check_timesteps_range(c, ts)
  -- np.interp over the train sigmas at (possibly fractional) timesteps
  local tr = train_sigmas(self)
  local sig = {}
  for i, t in ipairs(ts) do
    local j = math.floor(t)
    if j >= Tn - 1 then
      sig[i] = tr[Tn]
    else
      local slope = tr[j + 2] - tr[j + 1]
      sig[i] = f32(slope * (t - j) + tr[j + 1])
    end
  end
  sig[#sig + 1] = 0
  set_sigmas(self, sig, ts)
  self.timesteps = d.tensor(ts, { device = opts and opts.device })
  self._step_index = nil
  self._begin_index = nil
end

local function index_for_timestep(self, t, what)
  local hits = {}
  for i, v in ipairs(self._tlist) do if v == t then hits[#hits + 1] = i - 1 end end
  if #hits == 0 then
    raise(string.format('EulerAncestralDiscreteScheduler.%s: timestep %s is not one of the scheduler timesteps '
      .. '(use the values of timestep_list() after set_timesteps)', what, tostring(t)))
  end
  return hits[#hits > 1 and 2 or 1]
end

local function init_step_index(self, t, what)
  if self._begin_index ~= nil then self._step_index = self._begin_index
  else self._step_index = index_for_timestep(self, t, what) end
end

-- scale_model_input(sample, t): sample / sqrt(sigma^2 + 1), the input scaling of the Karras ODE
function Euler:scale_model_input(sample, timestep)
  T.need_tensor(sample, 'sample', 'EulerAncestralDiscreteScheduler:scale_model_input')
  if self.num_inference_steps == nil then
    raise('EulerAncestralDiscreteScheduler:scale_model_input: call set_timesteps(n) first')
  end
  if self._step_index == nil then
    init_step_index(self, B.timestep_number('EulerAncestralDiscreteScheduler', timestep), 'scale_model_input')
  end
  local sigma = self._sig[self._step_index + 1]
  self.is_scale_input_called = true
  return sample / sqrt32(f32(f32(sigma * sigma) + 1))
end

-- step(model_output, timestep, sample, {generator=, variance_noise=}) -> {prev_sample=, pred_original_sample=}
function Euler:step(model_output, timestep, sample, opts)
  local name = 'EulerAncestralDiscreteScheduler'
  opts = opts or {}
  B.check_timesteps_set(self, name)
  B.check_step_args(name, model_output, sample, false)
  local t = B.timestep_number(name, timestep)
  if self._step_index == nil then init_step_index(self, t, 'step') end
  local si = self._step_index
  if si >= #self._tlist then
    raise(string.format('%s.step: all %d timesteps have been stepped through; call set_timesteps(n) to sample again', name,
      #self._tlist))
  end
  local sigma = self._sig[si + 1]
  local pt = self.config.prediction_type
  local x0
  if pt == 'epsilon' then
    x0 = sample - model_output * sigma
  elseif pt == 'v_prediction' then
    local s2 = f32(f32(sigma * sigma) + 1)
    x0 = model_output * f32(-sigma / sqrt32(s2)) + sample / s2
  else
    raise(string.format("%s.step: prediction_type '%s' is not implemented for this scheduler (diffusers neither); "
      .. "use 'epsilon' or 'v_prediction'", name, pt))
  end
  local sf, st = sigma, self._sig[si + 2]
  local sf2, st2 = f32(sf * sf), f32(st * st)
  local up = sqrt32(f32(f32(st2 * f32(sf2 - st2)) / sf2))
  local down = sqrt32(f32(st2 - f32(up * up)))
  local derivative = (sample - x0) / sigma
  local prev = sample + derivative * f32(down - sigma)
  local noise = opts.variance_noise
  if noise ~= nil and opts.generator ~= nil then raise(name .. '.step: pass either generator or variance_noise, not both') end
  if noise == nil then
    noise = require('ddpm').randn(model_output:shape(), { generator = opts.generator, dtype = model_output.dtype,
      device = model_output.device })
  end
  prev = prev + noise * up
  self._step_index = si + 1
  return { prev_sample = prev, pred_original_sample = x0 }
end

-- add_noise: x + noise * sigma(t), sigma at the given timesteps of this schedule
function Euler:add_noise(original, noise, timesteps)
  local d = require 'ddpm'
  local name = 'EulerAncestralDiscreteScheduler:add_noise'
  T.need_tensor(original, 'original_samples', name)
  T.need_tensor(noise, 'noise', name)
  local list = type(timesteps) == 'number' and { timesteps } or (T.is_tensor(timesteps) and timesteps:double():totable_flat()
    or timesteps)
  local sig = {}
  for i, t in ipairs(list) do
    local idx
    if self._begin_index == nil then idx = index_for_timestep(self, t, 'add_noise')
    else idx = self._step_index or self._begin_index end
    sig[i] = self._sig[idx + 1]
  end
  local shape = { #list }
  for _ = 2, original:dim() do shape[#shape + 1] = 1 end
  return original + noise * d.tensor(sig, { dtype = original.dtype, device = original.device }):reshape(shape)
end

return Euler
