-- sched_solvers_spec.lua: DPMSolverMultistepScheduler and EulerAncestralDiscreteScheduler: exact
-- identities (first-order DPM-Solver++ is DDIM; with an oracle model every solver lands on the
-- data point), reproducible noise, state handling and errors.
local ddpm = require 'ddpm'
local S = require 'ddpm.schedulers'
local testing = require 'ddpm.testing'

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, 'expected an error')
  return tostring(err)
end

-- the exact noise prediction for a single data point x0: eps = (x - sqrt(acp) x0) / sqrt(1 - acp),
-- with acp interpolated from the continuous sigma of the scheduler at that step
local function oracle(x0) return function(x, alpha, sigma) return (x - x0 * alpha) / sigma end end

describe('DPMSolverMultistepScheduler', function()
  local gen = ddpm.Generator():manual_seed(11)
  local x0 = ddpm.rand(2, 3, 8, 8, { generator = gen }) * 1.8 - 0.9

  it('first order is DDIM (eta 0), step for step', function()
    local ddim = S.DDIMScheduler { num_train_timesteps = 1001, clip_sample = false, steps_offset = 100 }
    local dpm = S.DPMSolverMultistepScheduler.from_config(ddim.config,
      { solver_order = 1, timestep_spacing = 'linspace', steps_offset = 0 })
    ddim:set_timesteps(10)
    dpm:set_timesteps(10)
    assert.are.same(ddim:timestep_list(), dpm:timestep_list()) -- 1000, 900, ..., 100
    local x1 = ddpm.randn(2, 3, 8, 8, { generator = gen })
    local x2 = x1:clone()
    local list = ddim:timestep_list()
    for i, t in ipairs(list) do
      local o1 = ddim:step((x1 * 0.7):tanh(), t, x1)
      local o2 = dpm:step((x2 * 0.7):tanh(), t, x2)
      if i < #list then
        testing.assert_close(o2.prev_sample, o1.prev_sample, { atol = 2e-5, rtol = 2e-5, msg = 'step ' .. i })
      else
        -- the last DPM step goes to sigma 0, i.e. to DDIM's predicted x0
        testing.assert_close(o2.prev_sample, o1.pred_original_sample, { atol = 2e-5, rtol = 2e-5 })
      end
      x1, x2 = o1.prev_sample, o2.prev_sample
    end
  end)

  it('lands on the data point with an exact model, for every order, solver and sigma spacing', function()
    local cfgs = { {}, { solver_order = 3 }, { solver_type = 'heun' }, { use_karras_sigmas = true },
      { use_lu_lambdas = true }, { timestep_spacing = 'trailing' }, { algorithm_type = 'dpmsolver', final_sigmas_type = 'sigma_min' },
      { prediction_type = 'v_prediction' }, { prediction_type = 'sample' }, { algorithm_type = 'sde-dpmsolver++' } }
    for _, cfg in ipairs(cfgs) do
      local s = S.DPMSolverMultistepScheduler(cfg)
      s:set_timesteps(12)
      local model = oracle(x0)
      local x = ddpm.randn(2, 3, 8, 8, { generator = gen })
      for _, t in ipairs(s:timestep_list()) do
        local sigma = s._sig[s._step_index and s._step_index + 1 or 1]
        local alpha = 1 / math.sqrt(sigma * sigma + 1)
        local eps = model(x, alpha, sigma * alpha)
        local out = eps
        if cfg.prediction_type == 'v_prediction' then out = eps * alpha - x0 * (sigma * alpha)
        elseif cfg.prediction_type == 'sample' then out = x0 end
        x = s:step(out, t, x, { generator = gen }).prev_sample
      end
      local want = x0
      if cfg.final_sigmas_type == 'sigma_min' then
        -- stops at the smallest train sigma instead of 0
        local sl = s._sig[#s._sig]
        want = nil
        local a = 1 / math.sqrt(sl * sl + 1)
        assert(sl > 0 and sl < 0.02)
        testing.assert_close(x, x0 * a, { atol = 0.05, msg = 'sigma_min' })
      end
      if want then
        local k = next(cfg) or 'default'
        testing.assert_close(x, want, { atol = 2e-3, rtol = 0, msg = tostring(k) .. '=' .. tostring(cfg[k]) })
      end
    end
  end)

  it('gives reproducible SDE noise from a generator', function()
    local function run(seed)
      local s = S.DPMSolverMultistepScheduler { algorithm_type = 'sde-dpmsolver++' }
      s:set_timesteps(5)
      local g = ddpm.Generator():manual_seed(seed)
      local x = ddpm.randn(1, 3, 4, 4, { generator = ddpm.Generator():manual_seed(0) })
      for _, t in ipairs(s:timestep_list()) do x = s:step(x * 0.1, t, x, { generator = g }).prev_sample end
      return x
    end
    assert.is_true(run(1):equal(run(1)))
    assert.is_false(run(1):equal(run(2)))
  end)

  it('needs set_timesteps again after a full pass', function()
    local s = S.DPMSolverMultistepScheduler()
    s:set_timesteps(3)
    local x = ddpm.zeros(1, 3, 2, 2)
    for _, t in ipairs(s:timestep_list()) do x = s:step(x, t, x).prev_sample end
    assert.matches('call set_timesteps', errmsg(function() s:step(x, 999, x) end))
    s:set_timesteps(3)
    s:step(x, 999, x)
  end)

  it('rejects bad configs', function()
    assert.matches("unknown algorithm_type 'dpm'", errmsg(S.DPMSolverMultistepScheduler, { algorithm_type = 'dpm' }))
    assert.matches("final_sigmas_type 'zero' is not supported for algorithm_type 'dpmsolver'",
      errmsg(S.DPMSolverMultistepScheduler, { algorithm_type = 'dpmsolver' }))
    assert.matches('solver_order must be 1, 2 or 3', errmsg(S.DPMSolverMultistepScheduler, { solver_order = 4 }))
  end)
end)

describe('EulerAncestralDiscreteScheduler', function()
  local gen = ddpm.Generator():manual_seed(12)
  local x0 = ddpm.rand(2, 3, 8, 8, { generator = gen }) * 1.8 - 0.9

  it('has diffusers timesteps and sigmas', function()
    local s = S.EulerAncestralDiscreteScheduler()
    s:set_timesteps(4)
    assert.are.equal(ddpm.float32, s.timesteps.dtype)
    assert.are.same({ 999, 666, 333, 0 }, s:timestep_list())
    local sig = s.sigmas:totable_flat()
    assert.are.equal(5, #sig)
    assert.are.equal(0, sig[5])
    local acp = s.alphas_cumprod:select(0, 999):item()
    assert.is_true(math.abs(sig[1] - math.sqrt((1 - acp) / acp)) < 1e-3)
    assert.are.equal(sig[1], s.init_noise_sigma)
    local l = S.EulerAncestralDiscreteScheduler { timestep_spacing = 'leading' }
    l:set_timesteps(4)
    assert.is_true(math.abs(l.init_noise_sigma - math.sqrt(l._sig[1] ^ 2 + 1)) < 1e-3)
    local f = S.EulerAncestralDiscreteScheduler()
    f:set_timesteps(3)
    assert.are.same({ 999, 499.5, 0 }, f:timestep_list())
  end)

  it('scales the input and lands on the data point with an exact model', function()
    local s = S.EulerAncestralDiscreteScheduler()
    s:set_timesteps(15)
    local g = ddpm.Generator():manual_seed(3)
    local x = ddpm.randn(2, 3, 8, 8, { generator = g }) * s.init_noise_sigma
    for _, t in ipairs(s:timestep_list()) do
      local xin = s:scale_model_input(x, t)
      local sigma = s._sig[s._step_index + 1]
      testing.assert_close(xin, x / math.sqrt(sigma * sigma + 1), { atol = 1e-5, rtol = 1e-5 })
      x = s:step((x - x0) / sigma, t, x, { generator = g }).prev_sample
    end
    testing.assert_close(x, x0, { atol = 1e-3, rtol = 0 })
  end)

  it('adds noise at the schedule sigmas', function()
    local s = S.EulerAncestralDiscreteScheduler()
    s:set_timesteps(4)
    local noise = ddpm.ones(2, 3, 8, 8)
    local y = s:add_noise(x0, noise, { 999, 333 })
    testing.assert_close(y:select(0, 0), x0:select(0, 0) + s._sig[1], { atol = 1e-4 })
    testing.assert_close(y:select(0, 1), x0:select(0, 1) + s._sig[3], { atol = 1e-4 })
    assert.matches('timestep 5 is not one of', errmsg(function() s:add_noise(x0, noise, { 5, 5 }) end))
  end)

  it('refuses sample prediction as diffusers does', function()
    local s = S.EulerAncestralDiscreteScheduler { prediction_type = 'sample' }
    s:set_timesteps(2)
    assert.matches("prediction_type 'sample' is not implemented", errmsg(function() s:step(x0, 999, x0) end))
  end)
end)
