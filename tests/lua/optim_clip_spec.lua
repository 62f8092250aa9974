-- optim_clip_spec.lua: ddpm.nn.utils.clip_grad_norm_ / clip_grad_value_ (≈ torch.nn.utils):
-- the total norm over all gradients, in-place scaling, inf norms and non-finite norms.
local ddpm = require 'ddpm'
local utils = require 'ddpm.nn.utils'
local testing = require 'ddpm.testing'

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, 'expected an error')
  return tostring(err)
end

local gen = ddpm.Generator():manual_seed(5)
local function with_grads(dtype)
  local ps = {}
  for i, shape in ipairs({ { 3, 4 }, { 70000 }, { 2 } }) do
    local p = ddpm.zeros(shape, { dtype = dtype }):requires_grad_(true)
    p.grad = ddpm.randn(shape, { generator = gen, dtype = dtype }) * i
    ps[i] = p
  end
  return ps
end

describe('clip_grad_norm_', function()
  it('returns the total 2-norm and scales the gradients to max_norm', function()
    local ps = with_grads(ddpm.float64)
    local g0 = {}
    local sq = 0
    for i, p in ipairs(ps) do
      g0[i] = p.grad:clone()
      sq = sq + (p.grad * p.grad):sum():item()
    end
    local total = utils.clip_grad_norm_(ps, 1.0)
    assert.are.equal(0, total:dim())
    assert.is_true(math.abs(total:item() - math.sqrt(sq)) < 1e-9 * math.sqrt(sq))
    local coef = 1.0 / (math.sqrt(sq) + 1e-6)
    for i, p in ipairs(ps) do testing.assert_close(p.grad, g0[i] * coef, { rtol = 1e-12, atol = 0 }) end
    local after = utils.clip_grad_norm_(ps, 1.0)
    assert.is_true(math.abs(after:item() - 1) < 1e-5)
  end)
  it('leaves small gradients alone and supports the inf norm', function()
    local ps = with_grads(ddpm.float32)
    local g0 = ps[1].grad:clone()
    local total = utils.clip_grad_norm_(ps, 1e9)
    assert.is_true(ps[1].grad:equal(g0))
    local mx = 0
    for _, p in ipairs(ps) do mx = math.max(mx, p.grad:abs():amax():item()) end
    local tinf = utils.clip_grad_norm_(ps, 1e9, { norm_type = 'inf' })
    assert.are.equal(mx, tinf:item())
    assert.is_true(total:item() > mx)
    utils.clip_grad_norm_(ps, mx / 2, { norm_type = math.huge })
    local mx2 = 0
    for _, p in ipairs(ps) do mx2 = math.max(mx2, p.grad:abs():amax():item()) end
    assert.is_true(math.abs(mx2 - mx / 2) < 1e-5 * mx)
  end)
  it('ignores parameters without gradients and handles none at all', function()
    local p = ddpm.zeros(3):requires_grad_(true)
    assert.are.equal(0, utils.clip_grad_norm_({ p }, 1):item())
    local q = ddpm.zeros(2):requires_grad_(true)
    q.grad = ddpm.tensor({ 3, 4 })
    assert.are.equal(5, utils.clip_grad_norm_({ p, q }, 10, { norm_type = 2 }):item())
    assert.are.equal(7, utils.clip_grad_norm_(q, 10, { norm_type = 1 }):item())
  end)
  it('reports non-finite norms when asked', function()
    local q = ddpm.zeros(2):requires_grad_(true)
    q.grad = ddpm.tensor({ 1, 0 / 0 })
    assert.matches('non%-finite', errmsg(utils.clip_grad_norm_, { q }, 1, { error_if_nonfinite = true }))
    local t = utils.clip_grad_norm_({ q }, 1)
    assert.is_true(t:item() ~= t:item())
    assert.matches("norm_type must be a non%-negative number or 'inf'", errmsg(utils.clip_grad_norm_, { q }, 1, { norm_type = -1 }))
    assert.matches('parameter 1 is string', errmsg(utils.clip_grad_norm_, { 'w' }, 1))
  end)
end)

describe('clip_grad_value_', function()
  it('clamps every gradient', function()
    local q = ddpm.zeros(3):requires_grad_(true)
    q.grad = ddpm.tensor({ -5, 0.5, 5 })
    utils.clip_grad_value_({ q }, 1)
    testing.assert_close(q.grad, ddpm.tensor({ -1, 0.5, 1 }), { rtol = 0, atol = 0 })
  end)
end)
