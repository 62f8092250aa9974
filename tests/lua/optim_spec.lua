-- optim_spec.lua: SGD, Adam and AdamW against reference formulas (float64 op by op, and float32
-- rounding as PyTorch's vectorised kernels do it), parameter groups, frozen parameters,
-- zero_grad, exact resumption through state_dict and ddpm.save, and clear errors.
local ddpm = require 'ddpm'
local optim = require 'ddpm.optim'
local testing = require 'ddpm.testing'
local B = require 'ddpm.schedulers.base' -- f32 / fma32 helpers for the float32 reference

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, 'expected an error')
  return tostring(err)
end

local gen = ddpm.Generator():manual_seed(2024)
local function rand(shape, dtype) return ddpm.randn(shape, { generator = gen, dtype = dtype or ddpm.float64 }) end
local function leaf(t) return t:detach():clone():requires_grad_(true) end

-- reference Adam/AdamW on float64 tensors (PyTorch 1.13 _single_tensor_adam/adamw)
local function ref_adam(p, grads, o, decoupled)
  local lr, b1, b2, eps, wd = o.lr, o.betas[1], o.betas[2], o.eps, o.weight_decay
  local m, v, vmax = p * 0, p * 0, p * 0
  for t, g in ipairs(grads) do
    if o.maximize then g = -g end
    if decoupled then p = p * (1 - lr * wd) elseif wd ~= 0 then g = g + p * wd end
    m = m * b1 + g * (1 - b1)
    v = v * b2 + g * g * (1 - b2)
    local vv = v
    if o.amsgrad then
      vmax = vmax:maximum(v)
      vv = vmax
    end
    local denom = vv:sqrt() / math.sqrt(1 - b2 ^ t) + eps
    p = p - m / denom * (lr / (1 - b1 ^ t))
  end
  return p
end

local function ref_sgd(p, grads, o)
  local buf
  for _, g in ipairs(grads) do
    if o.maximize then g = -g end
    if o.weight_decay ~= 0 then g = g + p * o.weight_decay end
    if o.momentum ~= 0 then
      if buf == nil then buf = g else buf = buf * o.momentum + g * (1 - o.dampening) end
      if o.nesterov then g = g + buf * o.momentum else g = buf end
    end
    p = p - g * o.lr
  end
  return p
end

local function run(cls, p0, grads, opts)
  local p = leaf(p0)
  local opt = cls({ p }, opts)
  for _, g in ipairs(grads) do
    p.grad = g
    opt:step()
  end
  return p:detach(), opt
end

describe('Adam and AdamW', function()
  local p0 = rand({ 5, 7 })
  local grads = { rand({ 5, 7 }), rand({ 5, 7 }), rand({ 5, 7 }) * 1e-3 }
  local cases = {
    {},
    { lr = 0.01, betas = { 0.8, 0.99 }, eps = 1e-6 },
    { weight_decay = 0.1 },
    { amsgrad = true },
    { maximize = true, weight_decay = 0.05 },
  }
  it('match the float64 reference (Adam, L2 decay)', function()
    for _, c in ipairs(cases) do
      local o = { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0, amsgrad = false, maximize = false }
      for k, v in pairs(c) do o[k] = v end
      local p = run(optim.Adam, p0, grads, c)
      testing.assert_close(p, ref_adam(p0, grads, o, false), { rtol = 1e-12, atol = 1e-14 })
    end
  end)
  it('match the float64 reference (AdamW, decoupled decay, default 1e-2)', function()
    for _, c in ipairs(cases) do
      local o = { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 1e-2, amsgrad = false, maximize = false }
      for k, v in pairs(c) do o[k] = v end
      local p = run(optim.AdamW, p0, grads, c)
      testing.assert_close(p, ref_adam(p0, grads, o, true), { rtol = 1e-12, atol = 1e-14 })
    end
  end)
  it('round float32 like PyTorch 1.13 (fma in add(alpha), separate roundings elsewhere)', function()
    local f32, fma32 = B.f32, B.fma32
    local pf = rand({ 3, 11 }, ddpm.float32)
    local gf = { rand({ 3, 11 }, ddpm.float32), rand({ 3, 11 }, ddpm.float32) }
    local lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    local got = run(optim.Adam, pf, gf, { lr = lr }):totable_flat()
    local p, gs = pf:totable_flat(), { gf[1]:totable_flat(), gf[2]:totable_flat() }
    for i = 1, #p do
      local m, v, x = 0, 0, p[i]
      for t = 1, 2 do
        local g = gs[t][i]
        m = fma32(g, f32(1 - b1), f32(m * f32(b1)))
        v = f32(f32(v * f32(b2)) + f32(f32(f32(1 - b2) * g) * g))
        local step_size, bc2s = lr / (1 - b1 ^ t), math.sqrt(1 - b2 ^ t)
        local denom = f32(f32(f32(math.sqrt(v)) / f32(bc2s)) + f32(eps))
        x = f32(x + f32(f32(f32(-step_size) * m) / denom))
      end
      assert(got[i] == x, string.format('element %d: %.9g vs %.9g', i, got[i], x))
    end
  end)
  it('keeps per-parameter state: step, exp_avg, exp_avg_sq', function()
    local p, opt = run(optim.Adam, p0, grads, { lr = 0.1 })
    local st = opt.state[opt.param_groups[1].params[1]]
    assert.are.equal(3, st.step)
    assert.are.same({ 5, 7 }, st.exp_avg:shape())
    assert.are.same({ 5, 7 }, st.exp_avg_sq:shape())
    assert.is_nil(st.max_exp_avg_sq)
    assert.is_false(p:equal(p0))
  end)
  it('update large parameters in parallel chunks like small ones', function()
    local big = rand({ 3, 70001 })
    local g = { rand({ 3, 70001 }), rand({ 3, 70001 }) }
    local o = { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0.01, amsgrad = false, maximize = false }
    testing.assert_close(run(optim.AdamW, big, g, {}), ref_adam(big, g, o, true), { rtol = 1e-12, atol = 1e-14 })
  end)
end)

describe('SGD', function()
  local p0 = rand({ 4, 6 })
  local grads = { rand({ 4, 6 }), rand({ 4, 6 }), rand({ 4, 6 }) }
  it('matches the float64 reference', function()
    local cases = {
      { lr = 0.1 },
      { lr = 0.1, momentum = 0.9 },
      { lr = 0.05, momentum = 0.9, dampening = 0.3, weight_decay = 0.01 },
      { lr = 0.05, momentum = 0.8, nesterov = true },
      { lr = 0.05, momentum = 0.5, maximize = true, weight_decay = 0.1 },
    }
    for _, c in ipairs(cases) do
      local o = { momentum = 0, dampening = 0, weight_decay = 0, nesterov = false, maximize = false }
      for k, v in pairs(c) do o[k] = v end
      testing.assert_close(run(optim.SGD, p0, grads, c), ref_sgd(p0, grads, o), { rtol = 1e-12, atol = 1e-14 })
    end
  end)
  it('needs a learning rate', function()
    assert.matches('SGD needs a learning rate', errmsg(optim.SGD, { leaf(p0) }))
    assert.matches('nesterov momentum requires a momentum > 0 and zero dampening',
      errmsg(optim.SGD, { leaf(p0) }, { lr = 0.1, nesterov = true }))
  end)
end)

describe('optimizer plumbing', function()
  it('gives each parameter group its own hyper-parameters', function()
    local a, b = leaf(rand({ 3 })), leaf(rand({ 3 }))
    local a0, b0 = a:detach():clone(), b:detach():clone()
    local opt = optim.SGD({ { params = { a } }, { params = { b }, lr = 1.0 } }, { lr = 0.1 })
    assert.are.equal(0.1, opt.param_groups[1].lr)
    assert.are.equal(1.0, opt.param_groups[2].lr)
    a.grad, b.grad = ddpm.ones(3, { dtype = ddpm.float64 }), ddpm.ones(3, { dtype = ddpm.float64 })
    opt:step()
    testing.assert_close(a:detach(), a0 - 0.1, { rtol = 0, atol = 1e-15 })
    testing.assert_close(b:detach(), b0 - 1.0, { rtol = 0, atol = 1e-15 })
    local c = leaf(rand({ 2 }))
    opt:add_param_group({ params = { c }, momentum = 0.9 })
    assert.are.equal(0.1, opt.param_groups[3].lr)
    assert.are.equal(0.9, opt.param_groups[3].momentum)
  end)
  it('skips parameters without a gradient (frozen)', function()
    local a, frozen = leaf(rand({ 3 })), rand({ 3 })
    frozen:requires_grad_(true)
    local f0 = frozen:detach():clone()
    local opt = optim.Adam({ a, frozen }, { lr = 0.1 })
    a.grad = ddpm.ones(3, { dtype = ddpm.float64 })
    opt:step()
    assert.is_true(frozen:detach():equal(f0))
    assert.is_nil(opt.state[frozen])
    assert.are.equal(1, opt.state[a].step)
  end)
  it('zero_grad sets gradients to none by default (PyTorch 2), or zeroes them', function()
    local a = leaf(rand({ 3 }))
    local opt = optim.Adam({ a })
    a.grad = ddpm.ones(3, { dtype = ddpm.float64 })
    opt:zero_grad()
    assert.is_nil(a.grad)
    a.grad = ddpm.ones(3, { dtype = ddpm.float64 })
    opt:zero_grad({ set_to_none = false })
    assert.is_true(a.grad:equal(ddpm.zeros(3, { dtype = ddpm.float64 })))
  end)
  it('works in a training loop with backward and a closure', function()
    local w = leaf(ddpm.tensor({ 3.0, -2.0 }))
    local opt = optim.SGD({ w }, { lr = 0.25 })
    for _ = 1, 20 do
      opt:zero_grad()
      local loss = (w * w):sum()
      loss:backward()
      opt:step()
    end
    assert.is_true(w:detach():abs():amax():item() < 1e-5)
    local loss = opt:step(function()
      opt:zero_grad()
      local l = (w * w):sum()
      l:backward()
      return l
    end)
    assert.is_true(loss:item() < 1e-9)
  end)
  it('resumes exactly from state_dict, also through ddpm.save/ddpm.load', function()
    local p0 = { rand({ 4, 3 }, ddpm.float32), rand({ 5 }, ddpm.float32) }
    local grads = {}
    for i = 1, 5 do grads[i] = { rand({ 4, 3 }, ddpm.float32), rand({ 5 }, ddpm.float32) } end
    local function make(ps)
      return optim.AdamW({ { params = { ps[1] } }, { params = { ps[2] }, lr = 0.01, amsgrad = true } }, { lr = 0.1 })
    end
    local function steps(opt, ps, from, to)
      for i = from, to do
        ps[1].grad, ps[2].grad = grads[i][1], grads[i][2]
        opt:step()
      end
    end
    local a = { leaf(p0[1]), leaf(p0[2]) }
    local oa = make(a)
    steps(oa, a, 1, 5)
    -- the same run, interrupted after step 2 and resumed from a saved checkpoint
    local b = { leaf(p0[1]), leaf(p0[2]) }
    local ob = make(b)
    steps(ob, b, 1, 2)
    local path = os.tmpname()
    ddpm.save({ optimizer = ob:state_dict(), params = { b[1]:detach(), b[2]:detach() } }, path)
    local ck = ddpm.load(path)
    os.remove(path)
    local c = { leaf(ck.params[1]), leaf(ck.params[2]) }
    local oc = make(c)
    oc:load_state_dict(ck.optimizer)
    assert.are.equal(0.01, oc.param_groups[2].lr)
    assert.is_true(oc.param_groups[2].amsgrad)
    steps(oc, c, 3, 5)
    for k = 1, 2 do assert.is_true(c[k]:detach():equal(a[k]:detach()), 'parameter ' .. k) end
    local sd = oc:state_dict()
    assert.are.same({ 0 }, sd.param_groups[1].params)
    assert.are.same({ 1 }, sd.param_groups[2].params)
    assert.are.equal(5, sd.state[1].step)
  end)
  it('refuses a state dict of another shape', function()
    local opt = optim.Adam({ leaf(rand({ 2 })), leaf(rand({ 2 })) })
    local other = optim.Adam({ leaf(rand({ 2 })) })
    assert.matches('has 1 parameters in the state dict but 2 in the optimizer', errmsg(function()
      opt:load_state_dict(other:state_dict())
    end))
    assert.matches('expected a table', errmsg(function() opt:load_state_dict(5) end))
  end)
end)

describe('optimizer errors', function()
  local p = leaf(rand({ 2 }))
  it('on parameters that are not leaf tensors', function()
    assert.matches('parameter 2 is number, expected a tensor', errmsg(optim.Adam, { p, 3 }))
    assert.matches('parameter 1 is not a leaf tensor', errmsg(optim.Adam, { p * 2 }))
    assert.matches('got a single tensor', errmsg(optim.Adam, p))
    assert.matches('empty parameter list', errmsg(optim.SGD, {}, { lr = 1 }))
    assert.matches('appears more than once', errmsg(optim.Adam, { p, p }))
    assert.matches('only floating%-point tensors', errmsg(optim.Adam, { ddpm.tensor({ 1 }, { dtype = ddpm.int64 }) }))
    assert.matches('optim_spec.lua:%d+:', errmsg(optim.Adam, { p * 2 }))
  end)
  it('on bad hyper-parameters', function()
    assert.matches('invalid lr %-1', errmsg(optim.Adam, { p }, { lr = -1 }))
    assert.matches('betas%[2%]%) 1; expected a value in %[0, 1%)', errmsg(optim.Adam, { p }, { betas = { 0.9, 1 } }))
    assert.matches('betas%[1%]%) %-0.1', errmsg(optim.AdamW, { p }, { betas = { -0.1, 0.9 } }))
    assert.matches('invalid eps', errmsg(optim.Adam, { p }, { eps = -1e-8 }))
    assert.matches('invalid weight_decay', errmsg(optim.AdamW, { p }, { weight_decay = -1 }))
    assert.matches("unknown option 'momentum'", errmsg(optim.Adam, { p }, { momentum = 0.9 }))
    assert.matches('invalid momentum', errmsg(optim.SGD, { p }, { lr = 0.1, momentum = -1 }))
    assert.matches('betas must be a pair', errmsg(optim.Adam, { p }, { betas = 0.9 }))
  end)
  it('in the C entry points too', function()
    local ffi = require 'ffi'
    local C = ddpm.C
    local arr = ffi.new('ddpm_tensor*[1]', { p })
    local steps = ffi.new('double[1]', { 1 })
    assert.are_not.equal(0, C.ddpm_adam_step_(1, arr, arr, arr, arr, nil, steps, -1, 0.9, 0.999, 1e-8, 0, 0))
    assert.matches('adam_step: lr = %-1', ffi.string(C.ddpm_last_error()))
    local g = ffi.new('ddpm_tensor*[1]', { ddpm.zeros(3, { dtype = ddpm.float64 }) })
    assert.are_not.equal(0, C.ddpm_adam_step_(1, arr, g, arr, arr, nil, steps, 1e-3, 0.9, 0.999, 1e-8, 0, 0))
    assert.matches('grad 1 is float64%[3%] on cpu but its parameter is float64%[2%]', ffi.string(C.ddpm_last_error()))
    local nonleaf = ffi.new('ddpm_tensor*[1]', { p * 1 })
    assert.are_not.equal(0, C.ddpm_sgd_step_(1, nonleaf, nonleaf, nil, nil, 0.1, 0, 0, 0, 0))
    assert.matches('is not a leaf', ffi.string(C.ddpm_last_error()))
  end)
end)

describe('optimizer modules', function()
  it('are reachable as ddpm.optim.* and by file', function()
    assert.are.equal(optim.AdamW, require('ddpm.optim.adamw'))
    assert.are.equal(optim, ddpm.optim)
    assert.matches('pass model:parameters%(%) rather than the model',
      errmsg(optim.Adam, { parameters = function() return {} end }))
  end)
end)
