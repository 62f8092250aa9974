-- sched_api_spec.lua: the scheduler interface: configs (defaults, from_config, save_config, load,
-- the registry), timestep spacings, beta schedules, prediction types, variance types,
-- thresholding, noise from a generator, and clear errors on bad input.
local ddpm = require 'ddpm'
local S = require 'ddpm.schedulers'
local testing = require 'ddpm.testing'

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, 'expected an error')
  return tostring(err)
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  return d
end

describe('scheduler configs', function()
  it('have diffusers defaults', function()
    local s = S.DDPMScheduler()
    assert.are.same(1000, s.config.num_train_timesteps)
    assert.are.equal(0.0001, s.config.beta_start)
    assert.are.equal('fixed_small', s.config.variance_type)
    assert.are.equal('leading', s.config.timestep_spacing)
    assert.is_true(s.config.clip_sample)
    local d = S.DDIMScheduler()
    assert.is_true(d.config.set_alpha_to_one)
    local m = S.DPMSolverMultistepScheduler()
    assert.are.equal('dpmsolver++', m.config.algorithm_type)
    assert.are.equal('linspace', m.config.timestep_spacing)
    assert.are.equal(2, m.config.solver_order)
    assert.are.equal(-math.huge, m.config.lambda_min_clipped)
  end)

  it('round-trip through scheduler_config.json in diffusers layout', function()
    local dir = tmpdir()
    local s = S.DDPMScheduler { num_train_timesteps = 200, beta_schedule = 'squaredcos_cap_v2', clip_sample_range = 2.5 }
    s:save_config(dir)
    local f = assert(io.open(dir .. '/scheduler_config.json'))
    local text = f:read('*a')
    f:close()
    assert.matches('"_class_name": "DDPMScheduler"', text, 1, true)
    assert.matches('"_diffusers_version": "0.27.2"', text, 1, true)
    assert.matches('\n  "beta_end": 0.02,\n', text, 1, true)
    assert.matches('"clip_sample_range": 2.5', text, 1, true)
    assert.matches('"num_train_timesteps": 200', text, 1, true)
    assert.matches('"sample_max_value": 1.0', text, 1, true)
    assert.matches('"trained_betas": null', text, 1, true)
    -- keys sorted as json.dumps(sort_keys=True) writes them
    local keys = {}
    for k in text:gmatch('\n  "([^"]+)":') do keys[#keys + 1] = k end
    local sorted = { unpack(keys) }
    table.sort(sorted)
    assert.are.same(sorted, keys)
    local l = S.load(dir)
    assert.are.equal('DDPMScheduler', l.name)
    assert.are.same(s.config, l.config)
    testing.assert_close(l.betas, s.betas, { rtol = 0, atol = 0 })
    local l2 = S.DDPMScheduler.from_config(dir)
    assert.are.same(s.config, l2.config)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it('reads a diffusers-written config, ignoring keys other schedulers own', function()
    local dir = tmpdir()
    os.execute("mkdir -p '" .. dir .. "/scheduler'")
    local f = assert(io.open(dir .. '/scheduler/scheduler_config.json', 'w'))
    f:write([[{
  "_class_name": "DDIMScheduler",
  "_diffusers_version": "0.27.2",
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "clip_sample": false,
  "num_train_timesteps": 1000,
  "set_alpha_to_one": false,
  "steps_offset": 1,
  "trained_betas": null,
  "skip_prk_steps": true
}
]])
    f:close()
    local s = S.load(dir) -- a pipeline directory: scheduler/scheduler_config.json
    assert.are.equal('DDIMScheduler', s.name)
    assert.are.equal(1, s.config.steps_offset)
    assert.is_false(s.config.set_alpha_to_one)
    assert.are.equal(s.alphas_cumprod:select(0, 0):item(), s.final_alpha_cumprod:item())
    s:set_timesteps(50)
    assert.are.equal(981, s:timestep_list()[1])
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it('swap DDPM for DDIM or DPM-Solver in one line (from_config)', function()
    local train = S.DDPMScheduler { num_train_timesteps = 200, beta_end = 0.03 }
    local ddim = S.DDIMScheduler.from_config(train.config)
    assert.are.equal(200, ddim.config.num_train_timesteps)
    assert.are.equal(0.03, ddim.config.beta_end)
    testing.assert_close(ddim.alphas_cumprod, train.alphas_cumprod, { rtol = 0, atol = 0 })
    local dpm = S.get('dpmsolver++').from_config(train, { solver_order = 3 })
    assert.are.equal(3, dpm.config.solver_order)
    assert.are.equal(200, dpm.config.num_train_timesteps)
    for _, name in ipairs({ 'DDPMScheduler', 'ddim', 'DPMSolverMultistepScheduler', 'euler_a' }) do
      local cls = S.get(name)
      local s = cls.from_config(train.config)
      s:set_timesteps(10)
      local x = ddpm.randn(1, 3, 4, 4, { generator = ddpm.Generator():manual_seed(1) })
      local t = s:timestep_list()[1]
      local out = s:step(ddpm.zeros_like(x), t, s:scale_model_input(x, t), { generator = ddpm.Generator():manual_seed(2) })
      assert.are.same(x:shape(), out.prev_sample:shape())
    end
  end)

  it('rejects unknown keys and values, listing the valid ones', function()
    assert.matches("unknown config key 'num_train_timestep'", errmsg(S.DDPMScheduler, { num_train_timestep = 10 }))
    local e = errmsg(S.DDPMScheduler, { beta_schedule = 'cosine' })
    assert.matches("unknown beta_schedule 'cosine'; expected one of 'linear', 'scaled_linear', 'squaredcos_cap_v2', 'sigmoid'",
      e, 1, true)
    assert.matches("unknown prediction_type 'eps'; expected one of 'epsilon', 'sample', 'v_prediction'",
      errmsg(S.DDIMScheduler, { prediction_type = 'eps' }), 1, true)
    assert.matches("unknown variance_type 'small'; expected one of 'fixed_small', 'fixed_small_log', 'fixed_large', "
      .. "'fixed_large_log', 'learned', 'learned_range'", errmsg(S.DDPMScheduler, { variance_type = 'small' }), 1, true)
    assert.matches("unknown timestep_spacing 'uniform'; expected one of 'linspace', 'leading', 'trailing'",
      errmsg(S.DDIMScheduler, { timestep_spacing = 'uniform' }), 1, true)
    assert.matches('config num_train_timesteps must be an integer', errmsg(S.DDPMScheduler, { num_train_timesteps = 'x' }))
    assert.matches("unknown scheduler 'pndm'", errmsg(S.get, 'pndm'))
    assert.matches('sched_api_spec.lua:%d+:', errmsg(S.DDPMScheduler, { beta_schedule = 'cosine' }))
  end)
end)

describe('timesteps', function()
  local function ts(cls, cfg, n)
    local s = S[cls](cfg)
    s:set_timesteps(n)
    return s:timestep_list()
  end
  it('follow diffusers for leading, linspace and trailing spacing', function()
    assert.are.same({ 900, 800, 700, 600, 500, 400, 300, 200, 100, 0 }, ts('DDIMScheduler', {}, 10))
    assert.are.same({ 901, 801, 701, 601, 501, 401, 301, 201, 101, 1 }, ts('DDIMScheduler', { steps_offset = 1 }, 10))
    assert.are.same({ 999, 888, 777, 666, 555, 444, 333, 222, 111, 0 }, ts('DDIMScheduler', { timestep_spacing = 'linspace' }, 10))
    assert.are.same({ 999, 899, 799, 699, 599, 499, 399, 299, 199, 99 }, ts('DDIMScheduler', { timestep_spacing = 'trailing' }, 10))
    -- np.arange with a fractional step and round-half-even
    assert.are.same({ 999, 666, 332 }, ts('DDPMScheduler', { timestep_spacing = 'trailing' }, 3))
    assert.are.same({ 999, 500, 0 }, ts('DDPMScheduler', { timestep_spacing = 'linspace' }, 3))
    assert.are.same({ 999, 899, 799, 699, 599, 500, 400, 300, 200, 100 }, ts('DPMSolverMultistepScheduler', {}, 10))
  end)
  it('accept custom DDPM timesteps', function()
    local s = S.DDPMScheduler { num_train_timesteps = 100 }
    s:set_timesteps({ timesteps = { 90, 50, 10 } })
    assert.are.equal(50, s:previous_timestep(90))
    assert.are.equal(-1, s:previous_timestep(10))
    local x = ddpm.randn(1, 3, 2, 2)
    s:step(x, 50, x, { variance_noise = ddpm.zeros_like(x) })
    assert.matches('descending', errmsg(function() s:set_timesteps({ timesteps = { 10, 50 } }) end))
  end)
  it('refuse bad step counts', function()
    local s = S.DDPMScheduler { num_train_timesteps = 100 }
    assert.matches('num_inference_steps %(101%) cannot be larger than num_train_timesteps %(100%)',
      errmsg(function() s:set_timesteps(101) end))
    assert.matches('must be a positive integer', errmsg(function() s:set_timesteps(0) end))
    assert.matches('must be a positive integer', errmsg(function() S.DDIMScheduler():set_timesteps(2.5) end))
    assert.matches('outside %[0, 100%)', errmsg(function() S.DDIMScheduler({ num_train_timesteps = 100, steps_offset = 20 }):set_timesteps(5) end))
  end)
end)

describe('beta schedules', function()
  it('scaled_linear is linear in sqrt(beta)', function()
    local s = S.DDPMScheduler { beta_schedule = 'scaled_linear', beta_start = 0.00085, beta_end = 0.012 }
    local b = s.betas:double():sqrt()
    local diff = b:narrow(0, 1, 999) - b:narrow(0, 0, 999)
    testing.assert_close(diff, ddpm.full({ 999 }, diff:mean():item(), { dtype = ddpm.float64 }), { atol = 1e-7, rtol = 0 })
    assert.is_true(math.abs(s.betas:select(0, 0):item() - 0.00085) < 1e-9)
  end)
  it('squaredcos_cap_v2 follows the Glide cosine alpha_bar, capped at 0.999', function()
    local s = S.DDPMScheduler { beta_schedule = 'squaredcos_cap_v2', num_train_timesteps = 50 }
    local b = s.betas:totable_flat()
    local function abar(t) return math.cos((t + 0.008) / 1.008 * math.pi / 2) ^ 2 end
    for i = 1, 50 do
      local want = math.min(1 - abar(i / 50) / abar((i - 1) / 50), 0.999)
      assert(math.abs(b[i] - want) <= 1e-7 * want + 1e-12, 'beta ' .. i)
    end
    assert.are.equal(b[50], b[50] < 1 and b[50] or 0) -- capped below 1
  end)
  it('sigmoid spans beta_start..beta_end', function()
    local s = S.DDPMScheduler { beta_schedule = 'sigmoid' }
    local b = s.betas:totable_flat()
    assert.is_true(b[1] > 0.0001 and b[1] < 0.0002 and b[1000] < 0.02 and b[1000] > 0.0199)
  end)
  it('trained_betas and rescale_betas_zero_snr', function()
    local s = S.DDIMScheduler { num_train_timesteps = 4, trained_betas = { 0.1, 0.2, 0.3, 0.4 } }
    testing.assert_close(s.betas, { 0.1, 0.2, 0.3, 0.4 }, { rtol = 0, atol = 2e-8 })
    assert.matches('trained_betas has 3 values', errmsg(S.DDIMScheduler, { num_train_timesteps = 4, trained_betas = { 1, 2, 3 } }))
    local z = S.DDPMScheduler { rescale_betas_zero_snr = true }
    assert.are.equal(0, z.alphas_cumprod:select(0, 999):item())
    local plain = S.DDPMScheduler()
    assert.is_true(math.abs(z.alphas_cumprod:select(0, 0):item() - plain.alphas_cumprod:select(0, 0):item()) < 1e-6)
  end)
end)

describe('DDPM/DDIM step semantics', function()
  local gen = ddpm.Generator():manual_seed(42)
  local x0 = ddpm.rand(2, 3, 4, 4, { generator = gen }) * 1.6 - 0.8
  local eps = ddpm.randn(2, 3, 4, 4, { generator = gen })

  it('recover x0 from an exact noise, sample or velocity prediction', function()
    for _, pt in ipairs({ 'epsilon', 'sample', 'v_prediction' }) do
      for _, cls in ipairs({ 'DDPMScheduler', 'DDIMScheduler' }) do
        local s = S[cls] { prediction_type = pt }
        s:set_timesteps(20)
        local t = 500
        local xt = s:add_noise(x0, eps, ddpm.tensor({ t, t }, { dtype = ddpm.int64 }))
        local out = pt == 'epsilon' and eps or (pt == 'sample' and x0 or s:get_velocity(x0, eps, ddpm.tensor({ t, t },
          { dtype = ddpm.int64 })))
        local r = s:step(out, t, xt, { variance_noise = ddpm.zeros_like(x0) })
        testing.assert_close(r.pred_original_sample, x0, { atol = 2e-5, rtol = 0, msg = cls .. ' ' .. pt })
      end
    end
  end)

  it('draws its noise from the generator, reproducibly', function()
    local s = S.DDPMScheduler()
    s:set_timesteps(50)
    local a = s:step(eps, 500, x0, { generator = ddpm.Generator():manual_seed(5) }).prev_sample
    local b = s:step(eps, 500, x0, { generator = ddpm.Generator():manual_seed(5) }).prev_sample
    local c = s:step(eps, 500, x0, { generator = ddpm.Generator():manual_seed(6) }).prev_sample
    assert.is_true(a:equal(b))
    assert.is_false(a:equal(c))
    local noise = ddpm.randn(2, 3, 4, 4, { generator = ddpm.Generator():manual_seed(5) })
    assert.is_true(a:equal(s:step(eps, 500, x0, { variance_noise = noise }).prev_sample))
    -- t = 0 adds no noise
    local z = s:step(eps, 0, x0, { generator = ddpm.Generator():manual_seed(5) })
    assert.is_true(z.prev_sample:equal(s:step(eps, 0, x0, { variance_noise = noise }).prev_sample))
    local d = S.DDIMScheduler()
    d:set_timesteps(10)
    local e1 = d:step(eps, 500, x0, { eta = 1, generator = ddpm.Generator():manual_seed(5) }).prev_sample
    assert.is_true(e1:equal(d:step(eps, 500, x0, { eta = 1, variance_noise = noise }).prev_sample))
    assert.matches('either generator or variance_noise',
      errmsg(function() d:step(eps, 500, x0, { eta = 1, variance_noise = noise, generator = ddpm.Generator() }) end))
  end)

  it('implement every variance type', function()
    local base = S.DDPMScheduler()
    base:set_timesteps(1000)
    local t = 300
    local mean = base:step(eps, t, x0, { variance_noise = ddpm.zeros_like(eps) }).prev_sample
    local noise = ddpm.ones(2, 3, 4, 4)
    local v_small = base:_get_variance(t)
    for _, vt in ipairs({ 'fixed_small', 'fixed_small_log', 'fixed_large' }) do
      local s = S.DDPMScheduler { variance_type = vt }
      s:set_timesteps(1000)
      local std = (s:step(eps, t, x0, { variance_noise = noise }).prev_sample - mean):mean():item()
      local acp_t, acp_p = s._acp[t + 1], s._acp[t]
      local beta = 1 - acp_t / acp_p
      local want = vt == 'fixed_large' and math.sqrt(beta) or math.sqrt(v_small)
      assert(math.abs(std - want) < 1e-5, vt .. ': std ' .. std .. ' want ' .. want)
    end
    -- learned_range: the model's extra channels interpolate the log variance
    local s = S.DDPMScheduler { variance_type = 'learned_range' }
    s:set_timesteps(1000)
    local mo = ddpm.cat({ eps, ddpm.ones(2, 3, 4, 4) }, 1) -- frac 1: the large variance
    local r = s:step(mo, t, x0, { variance_noise = noise })
    local acp_t, acp_p = s._acp[t + 1], s._acp[t]
    testing.assert_close(r.prev_sample - mean, ddpm.full({ 2, 3, 4, 4 }, math.sqrt(1 - acp_t / acp_p)), { atol = 1e-5 })
    local l = S.DDPMScheduler { variance_type = 'learned' }
    l:set_timesteps(1000)
    local r2 = l:step(ddpm.cat({ eps, ddpm.full({ 2, 3, 4, 4 }, 0.25) }, 1), t, x0, { variance_noise = noise })
    testing.assert_close(r2.prev_sample - mean, ddpm.full({ 2, 3, 4, 4 }, 0.5), { atol = 1e-5 })
    local fl = S.DDPMScheduler { variance_type = 'fixed_large_log' }
    fl:set_timesteps(10)
    assert.matches("'fixed_large_log' cannot be sampled", errmsg(function() fl:step(eps, 500, x0) end))
  end)

  it('clips or dynamically thresholds x0', function()
    local big = ddpm.randn(2, 3, 4, 4, { generator = gen }) * 3
    local s = S.DDIMScheduler { prediction_type = 'sample', clip_sample_range = 1.5 }
    s:set_timesteps(10)
    local r = s:step(big, 500, big).pred_original_sample
    testing.assert_close(r, big:clamp(-1.5, 1.5), { atol = 0, rtol = 0 })
    local th = S.DDIMScheduler { prediction_type = 'sample', thresholding = true, dynamic_thresholding_ratio = 0.9,
      sample_max_value = 2.0 }
    th:set_timesteps(10)
    local y = th:step(big, 500, big).pred_original_sample
    -- per sample: s = clamp(quantile(|x|, 0.9), 1, 2); y = clamp(x, -s, s) / s, so max |y| is 1
    for b = 0, 1 do
      local row = big:select(0, b):abs():reshape(-1):totable_flat()
      table.sort(row)
      local pos = 0.9 * (#row - 1)
      local lo = math.floor(pos)
      local q = row[lo + 1] + (row[lo + 2] - row[lo + 1]) * (pos - lo)
      local sb = math.min(math.max(q, 1), 2)
      testing.assert_close(y:select(0, b), big:select(0, b):clamp(-sb, sb) / sb, { atol = 1e-6, rtol = 1e-6 })
    end
  end)
end)

describe('scheduler errors', function()
  local x = ddpm.randn(1, 3, 4, 4)
  it('step before set_timesteps', function()
    for _, cls in ipairs({ 'DDPMScheduler', 'DDIMScheduler', 'DPMSolverMultistepScheduler', 'EulerAncestralDiscreteScheduler' }) do
      assert.matches('set_timesteps', errmsg(function() S[cls]():step(x, 999, x) end))
    end
  end)
  it('shape mismatch between model_output and sample', function()
    local s = S.DDPMScheduler()
    s:set_timesteps(10)
    assert.matches('model_output has shape %[1, 3, 4, 2%] but sample has shape %[1, 3, 4, 4%]',
      errmsg(function() s:step(ddpm.randn(1, 3, 4, 2), 900, x) end))
    local d = S.DDIMScheduler()
    d:set_timesteps(10)
    assert.matches('must match', errmsg(function() d:step(ddpm.randn(1, 6, 4, 4), 900, x) end))
    assert.matches('model_output must be a tensor', errmsg(function() d:step(nil, 900, x) end))
  end)
  it('a timestep not in the schedule', function()
    local s = S.DDPMScheduler()
    s:set_timesteps(10)
    assert.matches('timestep 901 is not one of the 10 timesteps set by set_timesteps %(900, 800, ..., 0%)',
      errmsg(function() s:step(x, 901, x) end))
    local d = S.DDIMScheduler()
    d:set_timesteps(10)
    assert.matches('timestep 5 is not one of', errmsg(function() d:step(x, 5, x) end))
    local m = S.DPMSolverMultistepScheduler()
    m:set_timesteps(10)
    assert.matches('timestep 5 is not one of', errmsg(function() m:step(x, 5, x) end))
    m:step(x, 999, x)
    assert.matches('expected timestep 899', errmsg(function() m:step(x, 799, x) end))
    assert.matches('timestep must be one value', errmsg(function() s:step(x, s.timesteps, x) end))
  end)
  it('add_noise with float timesteps', function()
    assert.matches('timesteps must be an integer tensor', errmsg(function()
      S.DDPMScheduler():add_noise(x, x, ddpm.tensor({ 1 }))
    end))
    assert.matches('out of range', errmsg(function()
      S.DDPMScheduler { num_train_timesteps = 10 }:add_noise(x, x, ddpm.tensor({ 10 }, { dtype = ddpm.int64 }))
    end))
  end)
end)
