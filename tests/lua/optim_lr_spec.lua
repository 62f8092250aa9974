-- optim_lr_spec.lua: learning-rate schedules: diffusers' get_scheduler names (values checked
-- against their formulas at chosen steps), torch's LambdaLR/StepLR/ExponentialLR, resumption.
local ddpm = require 'ddpm'
local optim = require 'ddpm.optim'

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, 'expected an error')
  return tostring(err)
end

local function make_opt(lr) return optim.Adam({ ddpm.zeros(2):requires_grad_(true) }, { lr = lr or 1.0 }) end

-- the lr after `step` scheduler steps (the lr set at construction is step 0)
local function lrs(name, opts, steps, lr)
  local opt = make_opt(lr)
  local s = optim.get_scheduler(name, opt, opts)
  local r, at = {}, 0
  for _, k in ipairs(steps) do
    while at < k do
      s:step()
      at = at + 1
    end
    r[#r + 1] = s:get_last_lr()[1]
    assert.are.equal(r[#r], opt.param_groups[1].lr)
  end
  return r
end

local function close(a, b)
  for i = 1, #b do assert(math.abs(a[i] - b[i]) < 1e-12, string.format('value %d: %.15g vs %.15g', i, a[i], b[i])) end
end

describe('get_scheduler (diffusers names)', function()
  local w = { num_warmup_steps = 10, num_training_steps = 110 }
  it('constant and constant_with_warmup', function()
    close(lrs('constant', {}, { 0, 5, 500 }, 0.5), { 0.5, 0.5, 0.5 })
    close(lrs('constant_with_warmup', { num_warmup_steps = 4 }, { 0, 1, 3, 4, 100 }), { 0, 0.25, 0.75, 1, 1 })
  end)
  it('linear', function()
    close(lrs('linear', w, { 0, 5, 10, 60, 110, 200 }), { 0, 0.5, 1, 0.5, 0, 0 })
  end)
  it('cosine (half a cosine, whatever num_cycles says)', function()
    local r = lrs('cosine', { num_warmup_steps = 10, num_training_steps = 110, num_cycles = 3 }, { 5, 10, 35, 60, 110 })
    close(r, { 0.5, 1, 0.5 * (1 + math.cos(math.pi * 0.25)), 0.5, 0 })
  end)
  it('cosine_with_restarts', function()
    local o = { num_warmup_steps = 10, num_training_steps = 110, num_cycles = 2 }
    close(lrs('cosine_with_restarts', o, { 10, 35, 59, 60, 85, 110 }),
      { 1, 0.5, 0.5 * (1 + math.cos(math.pi * 0.98)), 1, 0.5, 0 })
  end)
  it('polynomial', function()
    local o = { num_warmup_steps = 10, num_training_steps = 110, power = 2.0, lr_end = 1e-3 }
    local r = lrs('polynomial', o, { 5, 10, 60, 110, 111 }, 0.1)
    close(r, { 0.05, 0.1, (0.1 - 1e-3) * 0.25 + 1e-3, 1e-3, 1e-3 })
    assert.matches('lr_end %(1%) must be smaller than the initial lr %(0.1%)',
      errmsg(optim.get_scheduler, 'polynomial', make_opt(0.1), { num_warmup_steps = 0, num_training_steps = 5, lr_end = 1 }))
  end)
  it('piecewise_constant', function()
    close(lrs('piecewise_constant', { step_rules = '1:10,0.1:20,0.01' }, { 0, 9, 10, 19, 20, 100 }),
      { 1, 1, 0.1, 0.1, 0.01, 0.01 })
  end)
  it('names the valid schedules and the missing options', function()
    assert.matches("unknown schedule 'cosin'; expected one of: constant, constant_with_warmup, linear, cosine, "
      .. 'cosine_with_restarts, polynomial, piecewise_constant', errmsg(optim.get_scheduler, 'cosin', make_opt()), 1, true)
    assert.matches("'linear' requires num_warmup_steps", errmsg(optim.get_scheduler, 'linear', make_opt(), {}))
    assert.matches("'cosine' requires num_training_steps",
      errmsg(optim.get_scheduler, 'cosine', make_opt(), { num_warmup_steps = 1 }))
    assert.matches('expected an optimizer', errmsg(optim.get_scheduler, 'constant', nil))
  end)
end)

describe('torch-style schedules', function()
  it('LambdaLR per group, with initial_lr and get_last_lr', function()
    local a, b = ddpm.zeros(1):requires_grad_(true), ddpm.zeros(1):requires_grad_(true)
    local opt = optim.SGD({ { params = { a } }, { params = { b }, lr = 0.5 } }, { lr = 0.1 })
    local s = optim.lr_scheduler.LambdaLR(opt, { function(e) return 1 / (e + 1) end, function(e) return 2 ^ -e end })
    assert.are.same({ 0.1, 0.5 }, s:get_last_lr())
    s:step()
    s:step()
    close(s:get_last_lr(), { 0.1 / 3, 0.125 })
    assert.are.equal(0.1, opt.param_groups[1].initial_lr)
    assert.are.equal(2, s.last_epoch)
  end)
  it('StepLR and ExponentialLR', function()
    local opt = make_opt(1.0)
    local s = optim.lr_scheduler.StepLR(opt, 3, { gamma = 0.5 })
    local seen = {}
    for _ = 1, 7 do
      seen[#seen + 1] = s:get_last_lr()[1]
      s:step()
    end
    close(seen, { 1, 1, 1, 0.5, 0.5, 0.5, 0.25 })
    local e = optim.lr_scheduler.ExponentialLR(make_opt(1.0), 0.9)
    e:step()
    e:step()
    close(e:get_last_lr(), { 0.81 })
  end)
  it('resume from state_dict', function()
    local opt = make_opt(1.0)
    local s = optim.get_scheduler('linear', opt, { num_warmup_steps = 10, num_training_steps = 110 })
    for _ = 1, 30 do s:step() end
    local sd = s:state_dict()
    local opt2 = make_opt(1.0)
    local s2 = optim.get_scheduler('linear', opt2, { num_warmup_steps = 10, num_training_steps = 110 })
    s2:load_state_dict(sd)
    s:step()
    s2:step()
    assert.are.equal(s:get_last_lr()[1], s2:get_last_lr()[1])
    assert.are.equal(opt.param_groups[1].lr, opt2.param_groups[1].lr)
    assert.are.equal(31, s2.last_epoch)
  end)
  it('refuses bad arguments', function()
    assert.matches('lr_lambda must be a function', errmsg(optim.lr_scheduler.LambdaLR, make_opt(), 3))
    assert.matches('step_size must be a positive integer', errmsg(optim.lr_scheduler.StepLR, make_opt(), 0))
    assert.matches("'initial_lr' is not specified", errmsg(optim.lr_scheduler.LambdaLR, make_opt(), function() return 1 end,
      { last_epoch = 5 }))
  end)
end)
