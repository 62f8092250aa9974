-- schedulers/dpmsolver_multistep.lua: DPMSolverMultistepScheduler (DPM-Solver / DPM-Solver++,
-- Lu et al. 2022), diffusers v0.27.2's config keys, defaults and update rules.  The default,
-- DPM-Solver++ 2M, gives good samples from small pixel-space models in 10-25 steps.
--
--   local s = ddpm.schedulers.DPMSolverMultistepScheduler.from_config(train_scheduler.config)
--   s:set_timesteps(20)
--   for _, t in ipairs(s:timestep_list()) do x = s:step(unet(x, t, ...), t, x).prev_sample end
--
-- A multistep solver remembers the previous model outputs: step through the timesteps in order
-- (a mismatch is an error here, where diffusers silently uses its own counter) and call
-- set_timesteps again before sampling anew.
local B = require 'ddpm.schedulers.base'
local T = require 'ddpm.tensor'
local raise = require('ddpm.ffi').raise
local f32, sqrt32 = B.f32, B.sqrt32

local function log32(x) return f32(math.log(x)) end
local function exp32(x) return f32(math.exp(x)) end

local DPM = B.class({
  name = 'DPMSolverMultistepScheduler',
  config_spec = {
    { 'num_train_timesteps', 1000, 'int' },
    { 'beta_start', 0.0001, 'float' },
    { 'beta_end', 0.02, 'float' },
    { 'beta_schedule', 'linear', 'str', { 'linear', 'scaled_linear', 'squaredcos_cap_v2' } },
    { 'trained_betas', nil, 'list' },
    { 'solver_order', 2, 'int' },
    { 'prediction_type', 'epsilon', 'str', B.PREDICTION_TYPES },
    { 'thresholding', false, 'bool' },
    { 'dynamic_thresholding_ratio', 0.995, 'float' },
    { 'sample_max_value', 1.0, 'float' },
    { 'algorithm_type', 'dpmsolver++', 'str', { 'dpmsolver', 'dpmsolver++', 'sde-dpmsolver', 'sde-dpmsolver++', 'deis' } },
    { 'solver_type', 'midpoint', 'str', { 'midpoint', 'heun', 'logrho', 'bh1', 'bh2' } },
    { 'lower_order_final', true, 'bool' },
    { 'euler_at_final', false, 'bool' },
    { 'use_karras_sigmas', false, 'bool' },
    { 'use_lu_lambdas', false, 'bool' },
    { 'final_sigmas_type', 'zero', 'str', { 'zero', 'sigma_min' } },
    { 'lambda_min_clipped', -math.huge, 'float' },
    { 'variance_type', nil, 'optstr', nil },
    { 'timestep_spacing', 'linspace', 'str', B.SPACINGS },
    { 'steps_offset', 0, 'int' },
    { 'rescale_betas_zero_snr', false, 'bool' },
  },
})

function DPM:init()
  local d = require 'ddpm'
  local c = self.config
  -- diffusers maps these onto the supported types
  if c.algorithm_type == 'deis' then c.algorithm_type = 'dpmsolver++' end
  if c.solver_type == 'logrho' or c.solver_type == 'bh1' or c.solver_type == 'bh2' then c.solver_type = 'midpoint' end
  -- variance_type only matters when 'learned'/'learned_range' (the model's extra channels are
  -- dropped); other values, e.g. a DDPM config's 'fixed_small', are kept and ignored as diffusers does
  if c.solver_order < 1 or c.solver_order > 3 then
    raise('DPMSolverMultistepScheduler: solver_order must be 1, 2 or 3, got ' .. c.solver_order)
  end
  if c.algorithm_type ~= 'dpmsolver++' and c.algorithm_type ~= 'sde-dpmsolver++' and c.final_sigmas_type == 'zero' then
    raise(string.format("DPMSolverMultistepScheduler: final_sigmas_type 'zero' is not supported for algorithm_type '%s'; "
      .. "choose 'sigma_min'", c.algorithm_type))
  end
  self.betas = B.make_betas(DPM, c)
  self.alphas = 1 - self.betas
  self.alphas_cumprod, self._acp = B.cumprod32(self.alphas)
  local n = c.num_train_timesteps
  if c.rescale_betas_zero_snr then
    -- keep the last alpha product off zero so its sigma stays finite
    self._acp[n] = 2 ^ -24
    self.alphas_cumprod = d.tensor(self._acp)
  end
  self.alpha_t = self.alphas_cumprod:sqrt()
  self.sigma_t = (1 - self.alphas_cumprod):sqrt()
  self.lambda_t = self.alpha_t:log() - self.sigma_t:log()
  self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod):sqrt()
  self.init_noise_sigma = 1.0
  local ts = B.np_linspace(0, n - 1, n)
  local rev = {}
  for i = 1, n do rev[i] = f32(ts[n + 1 - i]) end
  self.timesteps = d.tensor(rev)
  self.num_inference_steps = nil
  self.model_outputs = {}
  self.lower_order_nums = 0
  self._step_index = nil
  self._begin_index = nil
end

function DPM:step_index() return self._step_index end
function DPM:begin_index() return self._begin_index end
function DPM:set_begin_index(i) self._begin_index = i or 0 end

-- the train-time sigmas sqrt((1 - acp) / acp) as float32 numbers (index t + 1)
local function train_sigmas(self)
  local r = {}
  for i, a in ipairs(self._acp) do r[i] = sqrt32(f32(f32(1 - a) / a)) end
  return r
end

-- fractional timestep for a sigma by interpolating log sigmas (diffusers' _sigma_to_t)
local function sigma_to_t(sigma, log_sigmas)
  local ls = math.log(math.max(sigma, 1e-10))
  local n = #log_sigmas
  -- low_idx: the last index whose log sigma is <= ls (log sigmas increase with t)
  local count = 0
  for i = 1, n do if ls - log_sigmas[i] >= 0 then count = i end end
  local low = math.min(math.max(count - 1, 0), n - 2)
  local lo, hi = log_sigmas[low + 1], log_sigmas[low + 2]
  local w = (lo - ls) / (lo - hi)
  w = math.min(math.max(w, 0), 1)
  return (1 - w) * low + w * (low + 1)
end

function DPM:set_timesteps(n, opts)
  local d = require 'ddpm'
  local c = self.config
  local T = c.num_train_timesteps
  B.check_num_inference_steps('DPMSolverMultistepScheduler', n, T)
  -- clip off the high-noise end where lambda (log SNR / 2) falls below lambda_min_clipped
  local lam = self.lambda_t:double():totable_flat()
  local clipped = 0
  for i = #lam, 1, -1 do
    if lam[i] < c.lambda_min_clipped then clipped = clipped + 1 else break end
  end
  local last = T - clipped
  local ts = {}
  if c.timestep_spacing == 'linspace' then
    local ls = B.np_linspace(0, last - 1, n + 1)
    for i = 1, n do ts[i] = B.rint(ls[n + 2 - i]) end
  elseif c.timestep_spacing == 'leading' then
    local ratio = math.floor(last / (n + 1))
    for i = 1, n do ts[i] = (n + 1 - i) * ratio + c.steps_offset end
  elseif c.timestep_spacing == 'trailing' then
    local ar = B.np_arange(last, 0, -(T / n))
    for i = 1, #ar do ts[i] = B.rint(ar[i]) - 1 end
  end
  B.check_timesteps_range(c, ts)
  local sig = train_sigmas(self)
  local log_sigmas = {}
  for i, s in ipairs(sig) do log_sigmas[i] = log32(s) end
  local sigmas = {}
  if c.use_karras_sigmas or c.use_lu_lambdas then
    local m = n
    local ramp = B.np_linspace(0, 1, m)
    ts = {}
    if c.use_karras_sigmas then
      -- Karras et al. (2022): sigmas evenly spaced in sigma^(1/rho)
      local smin, smax = sig[1], sig[#sig]
      local rho = 7.0
      local lo, hi = smin ^ (1 / rho), smax ^ (1 / rho)
      for i = 1, m do sigmas[i] = (hi + ramp[i] * (lo - hi)) ^ rho end
    else
      -- Lu et al. (2022): evenly spaced in log sigma
      local lmin, lmax = log_sigmas[1], log_sigmas[#log_sigmas]
      for i = 1, m do sigmas[i] = math.exp(lmax + ramp[i] * (lmin - lmax)) end
    end
    for i = 1, m do ts[i] = B.rint(sigma_to_t(sigmas[i], log_sigmas)) end
  else
    for i, t in ipairs(ts) do sigmas[i] = sig[t + 1] end
  end
  local sigma_last = 0
  if c.final_sigmas_type == 'sigma_min' then sigma_last = sqrt32(f32(f32(1 - self._acp[1]) / self._acp[1])) end
  sigmas[#sigmas + 1] = sigma_last
  for i = 1, #sigmas do sigmas[i] = f32(sigmas[i]) end
  self._sig = sigmas
  self.sigmas = d.tensor(sigmas)
  self._tlist = ts
  self.timesteps = d.tensor(ts, { dtype = d.int64, device = opts and opts.device })
  self.num_inference_steps = #ts
  self.model_outputs = {}
  self.lower_order_nums = 0
  self._step_index = nil
  self._begin_index = nil
end

function DPM:scale_model_input(sample, timestep) return sample end

-- alpha_t, sigma_t for a sigma = sqrt((1 - acp) / acp), float32
local function alpha_sigma(sigma)
  local a = f32(1 / sqrt32(f32(f32(sigma * sigma) + 1)))
  return a, f32(sigma * a)
end
local function lambda_of(a, s) return f32(log32(a) - log32(s)) end

-- the model output as the solver wants it: x0 (DPM-Solver++) or epsilon (DPM-Solver)
function DPM:convert_model_output(model_output, sample)
  local c = self.config
  local pt = c.prediction_type
  if c.variance_type == 'learned' or c.variance_type == 'learned_range' then model_output = model_output:narrow(1, 0, 3) end
  local a, s = alpha_sigma(self._sig[self._step_index + 1])
  if c.algorithm_type == 'dpmsolver++' or c.algorithm_type == 'sde-dpmsolver++' then
    local x0
    if pt == 'epsilon' then x0 = (sample - model_output * s) / a
    elseif pt == 'sample' then x0 = model_output
    else x0 = sample * a - model_output * s end
    if c.thresholding then x0 = B.threshold_sample(c, x0) end
    return x0
  end
  local eps
  if pt == 'epsilon' then eps = model_output
  elseif pt == 'sample' then eps = (sample - model_output * a) / s
  else eps = model_output * a + sample * s end
  if c.thresholding then
    local x0 = B.threshold_sample(c, (sample - eps * s) / a)
    eps = (sample - x0 * a) / s
  end
  return eps
end

function DPM:dpm_solver_first_order_update(m, sample, noise)
  local i = self._step_index
  local at, st = alpha_sigma(self._sig[i + 2])
  local as, ss = alpha_sigma(self._sig[i + 1])
  local h = f32(lambda_of(at, st) - lambda_of(as, ss))
  local alg = self.config.algorithm_type
  if alg == 'dpmsolver++' then
    return sample * f32(st / ss) - m * f32(at * f32(exp32(-h) - 1))
  elseif alg == 'dpmsolver' then
    return sample * f32(at / as) - m * f32(st * f32(exp32(h) - 1))
  elseif alg == 'sde-dpmsolver++' then
    local e2 = exp32(f32(-2 * h))
    return sample * f32(f32(st / ss) * exp32(-h)) + m * f32(at * f32(1 - e2)) + noise * f32(st * sqrt32(f32(1 - e2)))
  else
    local e2 = exp32(f32(2 * h))
    return sample * f32(at / as) - m * f32(2 * f32(st * f32(exp32(h) - 1))) + noise * f32(st * sqrt32(f32(e2 - 1)))
  end
end

function DPM:multistep_dpm_solver_second_order_update(outs, sample, noise)
  local i = self._step_index
  local at, st = alpha_sigma(self._sig[i + 2])
  local as0, ss0 = alpha_sigma(self._sig[i + 1])
  local as1, ss1 = alpha_sigma(self._sig[i])
  local lt, l0, l1 = lambda_of(at, st), lambda_of(as0, ss0), lambda_of(as1, ss1)
  local m0, m1 = outs[#outs], outs[#outs - 1]
  local h, h0 = f32(lt - l0), f32(l0 - l1)
  local r0 = f32(h0 / h)
  local D0, D1 = m0, (m0 - m1) * f32(1 / r0)
  local alg, st_type = self.config.algorithm_type, self.config.solver_type
  local emh, eh = exp32(-h), exp32(h)
  if alg == 'dpmsolver++' then
    local k = f32(at * f32(emh - 1))
    if st_type == 'midpoint' then
      return sample * f32(st / ss0) - D0 * k - D1 * f32(0.5 * k)
    end
    return sample * f32(st / ss0) - D0 * k + D1 * f32(at * f32(f32(f32(emh - 1) / h) + 1))
  elseif alg == 'dpmsolver' then
    local k = f32(st * f32(eh - 1))
    if st_type == 'midpoint' then
      return sample * f32(at / as0) - D0 * k - D1 * f32(0.5 * k)
    end
    return sample * f32(at / as0) - D0 * k - D1 * f32(st * f32(f32(f32(eh - 1) / h) - 1))
  elseif alg == 'sde-dpmsolver++' then
    local e2 = exp32(f32(-2 * h))
    local k = f32(at * f32(1 - e2))
    local x = sample * f32(f32(st / ss0) * emh) + D0 * k
    if st_type == 'midpoint' then
      x = x + D1 * f32(0.5 * k)
    else
      x = x + D1 * f32(at * f32(f32(f32(1 - e2) / f32(-2 * h)) + 1))
    end
    return x + noise * f32(st * sqrt32(f32(1 - e2)))
  else
    local k = f32(st * f32(eh - 1))
    local x = sample * f32(at / as0) - D0 * f32(2 * k)
    if st_type == 'midpoint' then
      x = x - D1 * k
    else
      x = x - D1 * f32(2 * f32(st * f32(f32(f32(eh - 1) / h) - 1)))
    end
    return x + noise * f32(st * sqrt32(f32(exp32(f32(2 * h)) - 1)))
  end
end

function DPM:multistep_dpm_solver_third_order_update(outs, sample)
  local i = self._step_index
  local at, st = alpha_sigma(self._sig[i + 2])
  local as0, ss0 = alpha_sigma(self._sig[i + 1])
  local as1, ss1 = alpha_sigma(self._sig[i])
  local as2, ss2 = alpha_sigma(self._sig[i - 1])
  local lt, l0, l1, l2 = lambda_of(at, st), lambda_of(as0, ss0), lambda_of(as1, ss1), lambda_of(as2, ss2)
  local m0, m1, m2 = outs[#outs], outs[#outs - 1], outs[#outs - 2]
  local h, h0, h1 = f32(lt - l0), f32(l0 - l1), f32(l1 - l2)
  local r0, r1 = f32(h0 / h), f32(h1 / h)
  local D0 = m0
  local D1_0, D1_1 = (m0 - m1) * f32(1 / r0), (m1 - m2) * f32(1 / r1)
  local D1 = D1_0 + (D1_0 - D1_1) * f32(r0 / f32(r0 + r1))
  local D2 = (D1_0 - D1_1) * f32(1 / f32(r0 + r1))
  local h2 = f32(h * h)
  if self.config.algorithm_type == 'dpmsolver++' then
    local e = f32(exp32(-h) - 1)
    return sample * f32(st / ss0) - D0 * f32(at * e) + D1 * f32(at * f32(f32(e / h) + 1))
      - D2 * f32(at * f32(f32(f32(e + h) / h2) - 0.5))
  end
  local e = f32(exp32(h) - 1)
  return sample * f32(at / as0) - D0 * f32(st * e) - D1 * f32(st * f32(f32(e / h) - 1))
    - D2 * f32(st * f32(f32(f32(e - h) / h2) - 0.5))
end

local function find_index(self, t)
  for i, v in ipairs(self._tlist) do if v == t then return i - 1 end end
  return nil
end

-- step(model_output, timestep, sample, {generator=, variance_noise=}) -> {prev_sample=, pred_original_sample=}
function DPM:step(model_output, timestep, sample, opts)
  local name = 'DPMSolverMultistepScheduler'
  opts = opts or {}
  B.check_timesteps_set(self, name)
  B.check_step_args(name, model_output, sample,
    self.config.variance_type == 'learned' or self.config.variance_type == 'learned_range')
  local t = B.timestep_number(name, timestep)
  local n = #self._tlist
  if self._step_index == nil then
    if self._begin_index ~= nil then
      self._step_index = self._begin_index
    else
      local i = find_index(self, t)
      if i == nil then
        raise(string.format('%s.step: timestep %s is not one of the %d timesteps set by set_timesteps (%d, ..., %d)', name,
          tostring(t), n, self._tlist[1], self._tlist[n]))
      end
      self._step_index = i
    end
  end
  local si = self._step_index
  if si >= n then
    raise(string.format('%s.step: all %d timesteps have been stepped through; call set_timesteps(n) to sample again', name, n))
  end
  if self._tlist[si + 1] ~= t then
    raise(string.format('%s.step: expected timestep %d (step %d of %d) but got %s; a multistep solver must go through '
      .. 'its timesteps in order', name, self._tlist[si + 1], si + 1, n, tostring(t)))
  end
  local c = self.config
  local lower_order_final = si == n - 1 and (c.euler_at_final or (c.lower_order_final and n < 15)
    or c.final_sigmas_type == 'zero')
  local lower_order_second = si == n - 2 and c.lower_order_final and n < 15
  local m = self:convert_model_output(model_output, sample)
  local outs = self.model_outputs
  for k = 1, c.solver_order - 1 do outs[k] = outs[k + 1] end
  outs[c.solver_order] = m
  local noise
  if c.algorithm_type == 'sde-dpmsolver' or c.algorithm_type == 'sde-dpmsolver++' then
    noise = opts.variance_noise
    if noise ~= nil and opts.generator ~= nil then raise(name .. '.step: pass either generator or variance_noise, not both') end
    if noise == nil then
      noise = require('ddpm').randn(model_output:shape(), { generator = opts.generator, device = model_output.device })
    else
      T.need_tensor(noise, 'variance_noise', name .. '.step')
    end
  end
  local prev
  if c.solver_order == 1 or self.lower_order_nums < 1 or lower_order_final then
    prev = self:dpm_solver_first_order_update(m, sample, noise)
  elseif c.solver_order == 2 or self.lower_order_nums < 2 or lower_order_second then
    prev = self:multistep_dpm_solver_second_order_update(outs, sample, noise)
  else
    prev = self:multistep_dpm_solver_third_order_update(outs, sample)
  end
  if self.lower_order_nums < c.solver_order then self.lower_order_nums = self.lower_order_nums + 1 end
  self._step_index = si + 1
  local x0 = m
  if c.algorithm_type == 'dpmsolver' or c.algorithm_type == 'sde-dpmsolver' then
    local a, s = alpha_sigma(self._sig[si + 1])
    x0 = (sample - m * s) / a
  end
  return { prev_sample = prev, pred_original_sample = x0 }
end

-- add_noise at the sigmas of the given timesteps (from this scheduler's timesteps)
function DPM:add_noise(original, noise, timesteps)
  local d = require 'ddpm'
  local name = 'DPMSolverMultistepScheduler:add_noise'
  T.need_tensor(original, 'original_samples', name)
  T.need_tensor(noise, 'noise', name)
  local list = type(timesteps) == 'number' and { timesteps } or (T.is_tensor(timesteps) and timesteps:double():totable_flat()
    or timesteps)
  local sig = self._sig or train_sigmas(self)
  local tl = self._tlist
  local alphas, sigmas = {}, {}
  for i, t in ipairs(list) do
    local idx
    if self._begin_index ~= nil then
      idx = self._step_index or self._begin_index
    elseif tl then
      idx = find_index(self, t) or (#tl - 1)
    else
      idx = (self.config.num_train_timesteps - 1) - t -- the train timesteps run T-1 .. 0
    end
    local a, s = alpha_sigma(sig[idx + 1])
    alphas[i], sigmas[i] = a, s
  end
  local shape = { #list }
  for _ = 2, original:dim() do shape[#shape + 1] = 1 end
  local opt = { dtype = original.dtype, device = original.device }
  return d.tensor(alphas, opt):reshape(shape) * original + d.tensor(sigmas, opt):reshape(shape) * noise
end

return DPM
