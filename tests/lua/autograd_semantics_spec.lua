-- autograd_semantics_spec.lua: how gradients behave: accumulation into leaves until reset,
-- retain_graph, no_grad/enable_grad, detach, freed graphs, refused in-place writes, grad_fn
-- names, broadcasting, tie conventions, and ddpm.autograd.grad / backward.
local ddpm = require 'ddpm'
local autograd = ddpm.autograd
local assert_close = require('ddpm.testing').assert_close

local function err_of(f)
  local ok, e = pcall(f)
  assert.is_false(ok, 'expected an error')
  return tostring(e)
end
local function leaf(v) return ddpm.tensor(v, { dtype = ddpm.float64, requires_grad = true }) end

describe('autograd', function()
  it('accumulates into leaves until .grad is reset', function()
    local x = leaf({ 1, 2, 3 })
    assert.is_nil(x.grad)
    ;(x * x):sum():backward()
    assert_close(x.grad, { 2, 4, 6 })
    ;(x * 3):sum():backward()
    assert_close(x.grad, { 5, 7, 9 })
    x.grad = nil
    assert.is_nil(x.grad)
    ;(x * 3):sum():backward()
    assert_close(x.grad, { 3, 3, 3 })
    -- a gradient tensor the user holds is updated in place, as in PyTorch
    local g = x.grad
    ;(x * 1):sum():backward()
    assert_close(g, { 4, 4, 4 })
    x.grad = ddpm.zeros(3, { dtype = ddpm.float64 })
    ;(x * 2):sum():backward()
    assert_close(x.grad, { 2, 2, 2 })
    assert.matches('set grad: gradient .* does not match', err_of(function() x.grad = ddpm.zeros(2, { dtype = ddpm.float64 }) end))
  end)

  it('frees the graph after backward unless retain_graph', function()
    local x = leaf({ 1, 2 })
    local y = (x * x):sum()
    y:backward({ retain_graph = true })
    y:backward()
    assert_close(x.grad, { 4, 8 })
    local e = err_of(function() y:backward() end)
    assert.matches('autograd_semantics_spec%.lua:%d+: backward: trying to backward through the graph a second time', e)
    assert.matches('retain_graph=true', e)
    -- ops that saved nothing can run again
    local z = (x + 1):sum()
    z:backward()
    z:backward()
    assert_close(x.grad, { 6, 10 })
  end)

  it('takes an explicit gradient for non-scalar outputs', function()
    local x = leaf({ 1, 2 })
    local y = x * 3
    y:backward(ddpm.tensor({ 1, 10 }, { dtype = ddpm.float64 }))
    assert_close(x.grad, { 3, 30 })
    local e = err_of(function() (x * 2):backward() end)
    assert.matches('grad can be implicitly created only for scalar outputs', e)
    e = err_of(function() (x * 2):backward(ddpm.ones(3, { dtype = ddpm.float64 })) end)
    assert.matches('backward: gradient .* does not match the output', e)
    -- a gradient of another float dtype is converted
    x.grad = nil
    ;(x * 2):backward(ddpm.ones(2))
    assert_close(x.grad, { 2, 2 })
    assert.are.equal(ddpm.float64, x.grad.dtype)
  end)

  it('records nothing under no_grad and restores the mode, even on error', function()
    local x = leaf({ 1 })
    local y = ddpm.no_grad(function() return x * 2 end)
    assert.is_false(y.requires_grad)
    assert.is_nil(y.grad_fn)
    assert.is_true(ddpm.is_grad_enabled())
    local ok = pcall(ddpm.no_grad, function() error('inside') end)
    assert.is_false(ok)
    assert.is_true(ddpm.is_grad_enabled())
    local a, b = ddpm.no_grad(function(p, q) return p + q, p * q end, 2, 3)
    assert.are.same({ 5, 6 }, { a, b })
    ddpm.no_grad(function()
      assert.is_false(ddpm.is_grad_enabled())
      local z = ddpm.enable_grad(function() return x * 2 end)
      assert.is_true(z.requires_grad)
      assert.is_false(ddpm.is_grad_enabled())
    end)
    ddpm.set_grad_enabled(false)
    assert.is_false((x * 2).requires_grad)
    ddpm.set_grad_enabled(true)
    assert.is_true((x * 2).requires_grad)
    assert.are.equal(ddpm.no_grad, ddpm.inference_mode)
  end)

  it('detach shares memory without history', function()
    local x = leaf({ 1, 2 })
    local y = x * 2
    local d = y:detach()
    assert.is_false(d.requires_grad)
    assert.is_true(d.is_leaf)
    assert.is_nil(d.grad_fn)
    assert.is_true(ddpm.C.ddpm_tensor_same_storage(d, y) ~= 0)
    -- a detached factor contributes no gradient
    ;(x * x:detach()):sum():backward()
    assert_close(x.grad, { 1, 2 })
  end)

  it('refuses in-place writes that would corrupt gradients', function()
    local w = leaf({ 1, 2 })
    local e = err_of(function() w:add_(1) end)
    assert.matches('autograd_semantics_spec%.lua:%d+: add_: a leaf tensor that requires grad', e)
    assert.matches('ddpm%.no_grad', e)
    assert.matches('mul_: a leaf tensor that requires grad', err_of(function() w:mul_(2) end))
    assert.matches('fill_: a leaf tensor', err_of(function() w:fill_(0) end))
    assert.matches('relu_: a leaf tensor', err_of(function() w:relu_() end))
    assert.matches('copy_: a leaf tensor', err_of(function() w:copy_(ddpm.zeros(2)) end))
    -- under no_grad the update is allowed (how optimizers step)
    ddpm.no_grad(function() w:add_(1) end)
    assert_close(w, { 2, 3 })
    -- a non-leaf in a live graph
    local h = w * 2
    assert.matches('mul_: .* is part of a live autograd graph %(made by mul_scalar%)', err_of(function() h:mul_(2) end))
    -- a tensor saved by the graph, changed in place behind its back (without grad): backward refuses
    local c = ddpm.tensor({ 3, 4 }, { dtype = ddpm.float64 })
    local y = (c * w):sum()
    c:add_(1)
    e = err_of(function() y:backward() end)
    assert.matches('backward: a tensor mul saved for its gradient %(float64%[2%] on cpu%) was modified in place', e)
    -- ... and the same through a view of it
    local base = ddpm.tensor({ 3, 4, 5 }, { dtype = ddpm.float64 })
    local v = base:narrow(0, 0, 2)
    local y2 = (v * w):sum()
    base:select(0, 2):fill_(0) -- the same storage: PyTorch also counts this as a modification
    assert.matches('was modified in place', err_of(function() y2:backward() end))
    -- an in-place op taking a tensor that requires grad is refused too
    assert.matches('add_: other .* requires grad', err_of(function() ddpm.zeros(2, { dtype = ddpm.float64 }):add_(w) end))
  end)

  it('explains a backward on a tensor that needs no gradient', function()
    local e = err_of(function() ddpm.ones(2):sum():backward() end)
    assert.matches('autograd_semantics_spec%.lua:%d+: backward: float32%[%] on cpu does not require grad', e)
    local x = leaf({ 1 })
    e = err_of(function() ddpm.no_grad(function() return x * 2 end):backward() end)
    assert.matches('computed under no_grad', e)
    assert.matches('create_graph=true is not supported', err_of(function() (x * 2):sum():backward({ create_graph = true }) end))
  end)

  it('names grad_fn like PyTorch', function()
    local x = leaf({ 1, 2 })
    local m = leaf({ { 1, 2 }, { 3, 4 } })
    local names = {
      { x + x, 'AddBackward0' }, { x + 1, 'AddBackward0' }, { x - x, 'SubBackward0' }, { x * x, 'MulBackward0' },
      { x * 2, 'MulBackward0' }, { x / x, 'DivBackward0' }, { x / 2, 'DivBackward0' }, { x ^ 2, 'PowBackward0' },
      { 2 ^ x, 'PowBackward1' }, { x:pow(x), 'PowBackward1' }, { -x, 'NegBackward0' }, { x:exp(), 'ExpBackward0' },
      { x:log(), 'LogBackward0' }, { x:sqrt(), 'SqrtBackward0' }, { x:sigmoid(), 'SigmoidBackward0' },
      { x:tanh(), 'TanhBackward0' }, { x:relu(), 'ReluBackward0' }, { x:silu(), 'SiluBackward0' },
      { x:gelu(), 'GeluBackward0' }, { x:abs(), 'AbsBackward0' }, { x:clamp(0, 1), 'ClampBackward1' },
      { x:sum(), 'SumBackward0' }, { x:amax(), 'AmaxBackward0' }, { ddpm.maximum(x, x), 'MaximumBackward0' },
      { ddpm.where(x:gt(1), x, x), 'WhereBackward0' }, { x:view(2, 1), 'ViewBackward0' },
      { m:permute(1, 0), 'PermuteBackward0' }, { x:expand(2, 2), 'ExpandBackward0' },
      { x:slice(0, 1), 'SliceBackward0' }, { x:select(0, 1), 'SelectBackward0' }, { x:float(), 'ToCopyBackward0' },
      { ddpm.cat({ x, x }), 'CatBackward0' }, { m:matmul(m), 'ViewBackward0' }, { ddpm.bmm(m:view(1, 2, 2), m:view(1, 2, 2)), 'BmmBackward0' },
      { x:index_select(0, ddpm.tensor({ 1 }, { dtype = ddpm.int64 })), 'IndexSelectBackward0' },
    }
    for _, p in ipairs(names) do assert.are.equal(p[2], p[1].grad_fn) end
    assert.is_nil(x.grad_fn)
    assert.is_nil(x:detach().grad_fn)
  end)

  it('sums gradients over broadcast dims', function()
    local a = leaf({ { 1, 2, 3 } })          -- [1, 3]
    local b = leaf({ { 1 }, { 2 } })          -- [2, 1]
    local c = leaf(5)                         -- []
    local y = (a * b + c):sum()
    y:backward()
    assert_close(a.grad, { { 3, 3, 3 } })
    assert_close(b.grad, { { 6 }, { 6 } })
    assert_close(c.grad, 6)
    assert.are.same({ 1, 3 }, a.grad:shape())
    assert.are.same({}, c.grad:shape())
  end)

  it('follows PyTorch at ties: maximum splits, amax shares, max(dim) picks one', function()
    local a, b = leaf({ 1, 2, 3 }), leaf({ 1, 0, 3 })
    ddpm.maximum(a, b):sum():backward()
    assert_close(a.grad, { 0.5, 1, 0.5 })
    assert_close(b.grad, { 0.5, 0, 0.5 })
    local x = leaf({ { 1, 3, 3 }, { 2, 0, 1 } })
    x:amax(1):sum():backward()
    assert_close(x.grad, { { 0, 0.5, 0.5 }, { 1, 0, 0 } })
    x.grad = nil
    local v = x:max(1)
    v:sum():backward()
    assert_close(x.grad, { { 0, 1, 0 }, { 1, 0, 0 } })
    local r = leaf({ -1, 0, 2 })
    r:relu():sum():backward()
    assert_close(r.grad, { 0, 0, 1 })
    local s = leaf({ -1, 0, 2 })
    s:abs():sum():backward()
    assert_close(s.grad, { -1, 0, 1 })
    local k = leaf({ -1, 0, 1, 2 })
    k:clamp(0, 1):sum():backward()
    assert_close(k.grad, { 0, 1, 1, 0 })
  end)

  it('gives zero gradients through step functions and integer casts stop the graph', function()
    local x = leaf({ 1.5, -0.5 })
    ;(x:floor() + x:ceil() + x:round() + x:sign() + x):sum():backward()
    assert_close(x.grad, { 1, 1 })
    assert.is_false(x:long().requires_grad)
    assert.is_false(x:gt(0).requires_grad)
    assert.is_false(x:argmax().requires_grad)
  end)

  it('keeps leaves and requires_grad straight', function()
    local x = ddpm.ones(2)
    assert.is_false(x.requires_grad)
    x.requires_grad = true
    assert.is_true(x.requires_grad and x.is_leaf)
    x:requires_grad_(false)
    assert.is_false(x.requires_grad)
    local y = leaf({ 1 }) * 2
    assert.is_false(y.is_leaf)
    assert.matches('can only change requires_grad of leaf tensors', err_of(function() y.requires_grad = false end))
    assert.is_nil(y.grad) -- non-leaf gradients are not kept
  end)

  it('autograd.grad returns gradients without touching .grad', function()
    local x, w = leaf({ 1, 2 }), leaf({ 3, 4 })
    local y = (x * w):sum()
    local g = autograd.grad(y, { x, w })
    assert.are.equal(2, #g)
    assert_close(g[1], { 3, 4 })
    assert_close(g[2], { 1, 2 })
    assert.is_nil(x.grad)
    assert.is_nil(w.grad)
    -- the graph is freed unless retain_graph
    assert.matches('second time', err_of(function() autograd.grad(y, x) end))
    local z = (x * x):sum()
    local g1 = autograd.grad(z, x, { retain_graph = true })[1]
    local g2 = autograd.grad({ z }, { x })[1]
    assert_close(g1, g2)
    -- non-leaf inputs and grad_outputs
    local h = x * 3
    local out = h * h
    local gh = autograd.grad(out, h, { grad_outputs = ddpm.tensor({ 1, 0 }, { dtype = ddpm.float64 }) })[1]
    assert_close(gh, { 6, 0 })
    -- several outputs sum their contributions
    local a = (x * 2):sum()
    local b = (x * x):sum()
    assert_close(autograd.grad({ a, b }, x)[1], { 4, 6 })
    -- unused inputs
    local u = leaf({ 7 })
    assert.matches('input 2 .* was not used', err_of(function() autograd.grad((x * 2):sum(), { x, u }) end))
    local r = autograd.grad((x * 2):sum(), { x, u }, { allow_unused = true })
    assert_close(r[1], { 2, 2 })
    assert.is_nil(r[2])
    assert.are.equal(2, r.n)
    assert.is_nil(u.grad)
  end)

  it('autograd.grad refuses create_graph and bad arguments clearly', function()
    local x = leaf({ 1 })
    local y = (x * x):sum()
    assert.matches('autograd_semantics_spec%.lua:%d+: autograd%.grad: create_graph=true is not supported',
      err_of(function() autograd.grad(y, x, { create_graph = true }) end))
    assert.matches('autograd%.grad: inputs must be a tensor or a list of tensors, got nil', err_of(function() autograd.grad(y, nil) end))
    assert.matches('autograd%.grad: outputs%[2%] is string', err_of(function() autograd.grad({ y, 'a' }, x) end))
    assert.matches('input 1 .* does not require grad', err_of(function() autograd.grad(y, ddpm.ones(1)) end))
  end)

  it('autograd.backward runs one pass from several roots', function()
    local x = leaf({ 1, 2 })
    local h = x * x -- shared by both roots: one pass, so no retain_graph needed
    autograd.backward({ h:sum(), (h * 2):sum() })
    assert_close(x.grad, { 6, 12 })
    x.grad = nil
    local y = x * 3
    autograd.backward(y, ddpm.tensor({ 1, 2 }, { dtype = ddpm.float64 }))
    assert_close(x.grad, { 3, 6 })
    x.grad = nil
    local p, q = x * 2, x * 5
    autograd.backward({ p, q }, { ddpm.ones(2, { dtype = ddpm.float64 }), ddpm.ones(2, { dtype = ddpm.float64 }) })
    assert_close(x.grad, { 7, 7 })
    assert.matches('does not require grad', err_of(function() autograd.backward(ddpm.ones(1):sum()) end))
    local s = (x * x):sum()
    autograd.backward(s, { retain_graph = true })
    autograd.backward(s)
    assert.matches('create_graph=true is not supported', err_of(function() autograd.backward(s, nil, { create_graph = true }) end))
  end)

  it('handles long chains and wide fan-in without trouble', function()
    local x = leaf({ 1 })
    local y = x
    for _ = 1, 3000 do y = y * 1.0001 end
    y:sum():backward()
    assert_close(x.grad, { 1.0001 ^ 3000 }, { rtol = 1e-9 })
    local z = leaf({ 2 })
    local acc = z * 0
    for _ = 1, 200 do acc = acc + z end
    acc:sum():backward()
    assert_close(z.grad, { 200 })
  end)
end)
