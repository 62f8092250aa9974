-- amp_grad_scaler_spec.lua: ddpm.amp.GradScaler with PyTorch's semantics on the CPU: scaling,
-- one unscale per step, skipped steps on inf/NaN, back-off and growth, state dicts, errors.
local ddpm = require 'ddpm'
local optim = require 'ddpm.optim'
local testing = require 'ddpm.testing'

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, 'expected an error')
  return tostring(err)
end

local function setup(lr)
  local w = ddpm.tensor({ 1.0, -2.0, 3.0 }):requires_grad_(true)
  return w, optim.SGD({ w }, { lr = lr or 0.1 })
end

describe('GradScaler', function()
  it('scales the loss, unscales the gradients and steps', function()
    local scaler = ddpm.amp.GradScaler({ init_scale = 1024 })
    local w, opt = setup()
    local loss = (w * w):sum()
    local scaled = scaler:scale(loss)
    assert.are.equal(loss:item() * 1024, scaled:item())
    scaled:backward()
    testing.assert_close(w.grad, ddpm.tensor({ 2, -4, 6 }) * 1024, { rtol = 0, atol = 0 })
    scaler:step(opt)
    testing.assert_close(w:detach(), ddpm.tensor({ 0.8, -1.6, 2.4 }), { rtol = 1e-6, atol = 0 })
    scaler:update()
    assert.are.equal(1024, scaler:get_scale())
    assert.are.equal(1, scaler:state_dict()._growth_tracker)
  end)

  it('skips the step and backs off on inf or NaN gradients', function()
    for _, bad in ipairs({ math.huge, 0 / 0 }) do
      local scaler = ddpm.amp.GradScaler({ init_scale = 8 })
      local w, opt = setup()
      local w0 = w:detach():clone()
      w.grad = ddpm.tensor({ 1, bad, 1 })
      assert.is_nil(scaler:step(opt))
      assert.is_true(w:detach():equal(w0))
      scaler:update()
      assert.are.equal(4, scaler:get_scale())
      assert.are.equal(0, scaler:state_dict()._growth_tracker)
    end
  end)

  it('grows the scale after growth_interval clean steps', function()
    local scaler = ddpm.amp.GradScaler({ init_scale = 2, growth_interval = 3, growth_factor = 4 })
    local w, opt = setup(0)
    for i = 1, 7 do
      w.grad = ddpm.ones(3)
      scaler:step(opt)
      scaler:update()
      local want = i < 3 and 2 or (i < 6 and 8 or 32)
      assert.are.equal(want, scaler:get_scale(), 'after step ' .. i)
    end
  end)

  it('unscale_ once before clipping, then step does not unscale again', function()
    local scaler = ddpm.amp.GradScaler({ init_scale = 4 })
    local w, opt = setup(1)
    w.grad = ddpm.tensor({ 4, 8, 12 })
    scaler:unscale_(opt)
    testing.assert_close(w.grad, ddpm.tensor({ 1, 2, 3 }), { rtol = 0, atol = 0 })
    require('ddpm.nn.utils').clip_grad_norm_({ w }, 1e9)
    assert.matches('unscale_%(%) has already been called', errmsg(function() scaler:unscale_(opt) end))
    scaler:step(opt)
    testing.assert_close(w:detach(), ddpm.tensor({ 0, -4, 0 }), { rtol = 0, atol = 0 })
    assert.matches('step%(%) has already been called since the last update%(%)', errmsg(function() scaler:step(opt) end))
    assert.matches('unscale_%(%) is being called after step%(%)', errmsg(function() scaler:unscale_(opt) end))
    scaler:update()
    w.grad = ddpm.tensor({ 4, 4, 4 })
    scaler:step(opt) -- a new step after update()
  end)

  it('keeps its state across a checkpoint', function()
    local scaler = ddpm.amp.GradScaler({ init_scale = 16, growth_interval = 5 })
    local w, opt = setup(0)
    for _ = 1, 3 do
      w.grad = ddpm.ones(3)
      scaler:step(opt)
      scaler:update()
    end
    local sd = scaler:state_dict()
    assert.are.same({ scale = 16, growth_factor = 2, backoff_factor = 0.5, growth_interval = 5, _growth_tracker = 3 }, sd)
    local s2 = ddpm.amp.GradScaler()
    s2:load_state_dict(sd)
    assert.are.equal(16, s2:get_scale())
    assert.matches('state dict is empty', errmsg(function() s2:load_state_dict({}) end))
  end)

  it('does nothing when disabled', function()
    local scaler = ddpm.amp.GradScaler({ enabled = false })
    local w, opt = setup()
    local loss = (w * w):sum()
    assert.are.equal(loss, scaler:scale(loss))
    w.grad = ddpm.tensor({ 1, 1, 1 })
    scaler:step(opt)
    scaler:update()
    assert.are.equal(1.0, scaler:get_scale())
    assert.are.same({}, scaler:state_dict())
  end)

  it('refuses bad options and calls out of order', function()
    assert.matches('growth factor must be > 1.0', errmsg(ddpm.amp.GradScaler, { growth_factor = 0.5 }))
    assert.matches('backoff factor must be < 1.0', errmsg(ddpm.amp.GradScaler, { backoff_factor = 2 }))
    assert.matches("unknown option 'scale'", errmsg(ddpm.amp.GradScaler, { scale = 2 }))
    assert.matches('no inf checks were recorded', errmsg(function() ddpm.amp.GradScaler():update() end))
    assert.matches('expected an optimizer', errmsg(function() ddpm.amp.GradScaler():unscale_({}) end))
  end)
end)
