-- optim_ema_spec.lua: EMAModel with diffusers' semantics: the decay schedule (plain and warmup),
-- the fused update against its formula, frozen parameters, store/copy_to/restore, state dicts.
local ddpm = require 'ddpm'
local optim = require 'ddpm.optim'
local testing = require 'ddpm.testing'

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, 'expected an error')
  return tostring(err)
end

local gen = ddpm.Generator():manual_seed(77)
local function param(shape) return ddpm.randn(shape, { generator = gen }):requires_grad_(true) end
local function nudge(ps)
  ddpm.no_grad(function()
    for _, p in ipairs(ps) do p:add_(ddpm.randn(p:shape(), { generator = gen })) end
  end)
end

describe('EMAModel', function()
  it('follows diffusers get_decay', function()
    local ema = optim.EMAModel({ param({ 2 }) }, { decay = 0.999, update_after_step = 2 })
    assert.are.equal(0, ema:get_decay(1))
    assert.are.equal(0, ema:get_decay(3))
    assert.are.equal(2 / 11, ema:get_decay(4))
    assert.are.equal(0.999, ema:get_decay(10 ^ 7))
    local w = optim.EMAModel({ param({ 2 }) }, { use_ema_warmup = true, inv_gamma = 1, power = 0.75, min_decay = 0.1 })
    assert.are.equal(0, w:get_decay(1)) -- diffusers returns 0 before any clamping
    assert.is_true(math.abs(w:get_decay(2) - (1 - 2 ^ -0.75)) < 1e-15)
    local m = optim.EMAModel({ param({ 2 }) }, { use_ema_warmup = true, power = 0.75, min_decay = 0.5 })
    assert.are.equal(0.5, m:get_decay(2)) -- 0.405 raised to min_decay
    assert.is_true(math.abs(w:get_decay(11) - (1 - 11 ^ -0.75)) < 1e-15)
  end)

  it('updates shadow = shadow - (1 - decay) * (shadow - param), rounded as diffusers', function()
    local ps = { param({ 3, 4 }), param({ 70000 }) }
    local ema = optim.EMAModel(ps, { decay = 0.9 })
    local shadow = { ps[1]:detach():clone(), ps[2]:detach():clone() }
    for step = 1, 4 do
      nudge(ps)
      ema:step(ps)
      local d = ema.cur_decay_value
      assert.are.equal(ema:get_decay(step), d)
      for i = 1, 2 do shadow[i] = shadow[i] - (shadow[i] - ps[i]:detach()) * (1 - d) end
    end
    assert.are.equal(4, ema.optimization_step)
    for i = 1, 2 do testing.assert_close(ema.shadow_params[i], shadow[i], { rtol = 0, atol = 0 }) end
  end)

  it('copies frozen parameters instead of averaging them', function()
    local a, frozen = param({ 3 }), ddpm.randn(3, { generator = gen })
    local ema = optim.EMAModel({ a, frozen })
    ddpm.no_grad(function() frozen:add_(1) end)
    nudge({ a })
    ema:step({ a, frozen })
    assert.is_true(ema.shadow_params[2]:equal(frozen))
  end)

  it('store, copy_to and restore swap the weights for evaluation', function()
    local ps = { param({ 4 }), param({ 2, 2 }) }
    local ema = optim.EMAModel(ps, { decay = 0.5 })
    for _ = 1, 3 do
      nudge(ps)
      ema:step(ps)
    end
    local train = { ps[1]:detach():clone(), ps[2]:detach():clone() }
    ema:store(ps)
    ema:copy_to(ps)
    for i = 1, 2 do assert.is_true(ps[i]:detach():equal(ema.shadow_params[i])) end
    assert.is_true(ps[1].requires_grad)
    ema:restore(ps)
    for i = 1, 2 do assert.is_true(ps[i]:detach():equal(train[i])) end
    assert.matches('no store%(%)d weights', errmsg(function() ema:restore(ps) end))
  end)

  it('saves and loads its state', function()
    local ps = { param({ 5 }) }
    local ema = optim.EMAModel(ps, { decay = 0.99, update_after_step = 1 })
    for _ = 1, 3 do
      nudge(ps)
      ema:step(ps)
    end
    local path = os.tmpname()
    ddpm.save(ema:state_dict(), path)
    local sd = ddpm.load(path)
    os.remove(path)
    local ema2 = optim.EMAModel({ param({ 5 }) })
    ema2:load_state_dict(sd)
    assert.are.equal(3, ema2.optimization_step)
    assert.are.equal(0.99, ema2.decay)
    assert.are.equal(1, ema2.update_after_step)
    assert.is_true(ema2.shadow_params[1]:equal(ema.shadow_params[1]))
    nudge(ps)
    ema:step(ps)
    ema2:step(ps)
    assert.is_true(ema2.shadow_params[1]:equal(ema.shadow_params[1]))
  end)

  it('refuses bad input', function()
    local p = param({ 2 })
    assert.matches('decay must be a number in %[0, 1%]', errmsg(optim.EMAModel, { p }, { decay = 1.5 }))
    assert.matches("unknown option 'decy'", errmsg(optim.EMAModel, { p }, { decy = 0.9 }))
    assert.matches('parameter 1 is number', errmsg(optim.EMAModel, { 1 }))
    local ema = optim.EMAModel({ p })
    assert.matches('got 2 parameters but the EMA tracks 1', errmsg(function() ema:step({ p, p }) end))
    assert.matches('use_ema_warmup must be a boolean', errmsg(function() ema:load_state_dict({ use_ema_warmup = 1 }) end))
  end)
end)
