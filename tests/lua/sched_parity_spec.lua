-- sched_parity_spec.lua: DDPMScheduler and DDIMScheduler against diffusers v0.27.2 (the
-- scheduler_ddpm / scheduler_ddim fixtures): every tensor, bit-exact in float32.
local ddpm = require 'ddpm'
local S = require 'ddpm.schedulers'

local shared = os.getenv('DDPM_SHARED')
local function fixture(name)
  if not shared then return nil end
  local path = shared .. '/fixtures/' .. name
  local f = io.open(path, 'rb')
  if not f then return nil end
  f:close()
  return ddpm.load_safetensors(path)
end

-- exact: no tolerance at all (the arithmetic is float32 op by op, as diffusers does it)
local function exact(actual, expected, what)
  assert.are.same(expected:shape(), actual:shape(), what .. ': shape')
  local d = (actual:double() - expected:double()):abs():amax():item()
  assert(d == 0, string.format('%s: max |diff| %g, expected bit-exact', what, d))
end

describe('DDPMScheduler parity (num_train_timesteps=200)', function()
  local fx = fixture('scheduler_ddpm.safetensors')
  local function need()
    if not fx then pending('needs DDPM_SHARED/fixtures/scheduler_ddpm.safetensors') end
    return fx ~= nil
  end

  it('reproduces betas, alphas and alphas_cumprod', function()
    if not need() then return end
    local s = S.DDPMScheduler { num_train_timesteps = 200 }
    exact(s.betas, fx.betas, 'betas')
    exact(s.alphas, fx.alphas, 'alphas')
    exact(s.alphas_cumprod, fx.alphas_cumprod, 'alphas_cumprod')
  end)

  it('reproduces the timesteps for 200 and 50 steps', function()
    if not need() then return end
    local s = S.DDPMScheduler { num_train_timesteps = 200 }
    s:set_timesteps(200)
    assert.are.equal(ddpm.int64, s.timesteps.dtype)
    exact(s.timesteps, fx.timesteps_200, 'timesteps_200')
    s:set_timesteps(50)
    exact(s.timesteps, fx.timesteps_50, 'timesteps_50')
  end)

  it('reproduces add_noise', function()
    if not need() then return end
    local s = S.DDPMScheduler { num_train_timesteps = 200 }
    exact(s:add_noise(fx['add_noise.original'], fx['add_noise.noise'], fx['add_noise.timesteps']), fx['add_noise.out'],
      'add_noise')
  end)

  it('reproduces every recorded step: prev_sample, pred_original_sample, variance, mean', function()
    if not need() then return end
    local s = S.DDPMScheduler { num_train_timesteps = 200 }
    local mo, x = fx['step.model_output'], fx['step.sample']
    local checked = 0
    for _, n in ipairs({ 200, 50 }) do
      s:set_timesteps(n)
      for key in pairs(fx) do
        local kn, t = key:match('^step_n(%d+)_t(%d+)%.prev_sample$')
        if kn and tonumber(kn) == n then
          t = tonumber(t)
          local pre = string.format('step_n%d_t%d.', n, t)
          local out = s:step(mo, t, x, { variance_noise = fx[pre .. 'variance_noise'] })
          exact(out.prev_sample, fx[pre .. 'prev_sample'], pre .. 'prev_sample')
          exact(out.pred_original_sample, fx[pre .. 'pred_original_sample'], pre .. 'pred_original_sample')
          local mean = s:step(mo, t, x, { variance_noise = ddpm.zeros_like(x) }).prev_sample
          exact(mean, fx[pre .. 'mean'], pre .. 'mean')
          local v = t > 0 and s:_get_variance(t) or 0
          assert.are.equal(fx[pre .. 'variance']:item(), v, pre .. 'variance')
          -- the timestep may also come as a one-element tensor from s.timesteps
          local i = 0
          for k, tv in ipairs(s:timestep_list()) do if tv == t then i = k - 1 end end
          local out2 = s:step(mo, s.timesteps:select(0, i), x, { variance_noise = fx[pre .. 'variance_noise'] })
          exact(out2.prev_sample, fx[pre .. 'prev_sample'], pre .. 'prev_sample (tensor timestep)')
          checked = checked + 1
        end
      end
    end
    assert.are.equal(9, checked)
  end)
end)

describe('DDIMScheduler parity (num_train_timesteps=1000)', function()
  local fx = fixture('scheduler_ddim.safetensors')
  local function need()
    if not fx then pending('needs DDPM_SHARED/fixtures/scheduler_ddim.safetensors') end
    return fx ~= nil
  end

  it('reproduces betas, alphas, alphas_cumprod and final_alpha_cumprod', function()
    if not need() then return end
    local s = S.DDIMScheduler { num_train_timesteps = 1000 }
    exact(s.betas, fx.betas, 'betas')
    exact(s.alphas, fx.alphas, 'alphas')
    exact(s.alphas_cumprod, fx.alphas_cumprod, 'alphas_cumprod')
    exact(s.final_alpha_cumprod:reshape(1), fx.final_alpha_cumprod, 'final_alpha_cumprod')
  end)

  it('reproduces the timesteps for 10 and 50 steps', function()
    if not need() then return end
    local s = S.DDIMScheduler { num_train_timesteps = 1000 }
    s:set_timesteps(10)
    exact(s.timesteps, fx.timesteps_10, 'timesteps_10')
    s:set_timesteps(50)
    exact(s.timesteps, fx.timesteps_50, 'timesteps_50')
  end)

  it('reproduces add_noise', function()
    if not need() then return end
    local s = S.DDIMScheduler { num_train_timesteps = 1000 }
    exact(s:add_noise(fx['add_noise.original'], fx['add_noise.noise'], fx['add_noise.timesteps']), fx['add_noise.out'],
      'add_noise')
  end)

  it('reproduces every recorded step for eta 0 and eta 1', function()
    if not need() then return end
    local s = S.DDIMScheduler { num_train_timesteps = 1000 }
    s:set_timesteps(10)
    local mo, x = fx['step.model_output'], fx['step.sample']
    local checked = 0
    for key in pairs(fx) do
      local t, eta = key:match('^step_n10_t(%d+)_eta(%d)%.prev_sample$')
      if t then
        t, eta = tonumber(t), tonumber(eta)
        local pre = string.format('step_n10_t%d_eta%d.', t, eta)
        local out = s:step(mo, t, x, { eta = eta, variance_noise = fx[pre .. 'variance_noise'] })
        exact(out.prev_sample, fx[pre .. 'prev_sample'], pre .. 'prev_sample')
        exact(out.pred_original_sample, fx[pre .. 'pred_original_sample'], pre .. 'pred_original_sample')
        assert.are.equal(fx[pre .. 'variance']:item(), s:_get_variance(t, t - 100), pre .. 'variance')
        checked = checked + 1
      end
    end
    assert.are.equal(8, checked)
  end)
end)
