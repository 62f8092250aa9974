-- nn_norm_spec.lua: group_norm and layer_norm against naive loops, gradient checks (incl.
-- non-contiguous inputs), group_norm_silu equal to silu(group_norm(...)) in values and gradients,
-- and the errors of both.
-- LuaJIT 2.1 (this Debian beta3 snapshot) crashes sporadically (NULL read inside the VM, ~1 run in 40)
-- when these Lua-heavy naive loops and gradchecks are JIT-compiled; valgrind and ASan find no fault in
-- libddpm, and the interpreter never crashes, so the specs run interpreted.
jit.off()
local ddpm = require 'ddpm'
local F = ddpm.nn.functional
local testing = ddpm.testing

-- normalise each of `groups` consecutive blocks of `size` values, then apply per-channel affine
local function naive_group_norm(x, G, w, b, eps)
  local shape = x:shape()
  local N, C = shape[1], shape[2]
  local S = x:numel() / (N * C)
  local v = x:double():contiguous():totable_flat()
  local wv, bv = w and w:double():totable_flat(), b and b:double():totable_flat()
  local out = {}
  local M = C / G * S
  for n = 0, N - 1 do
    for g = 0, G - 1 do
      local base = (n * C + g * C / G) * S
      local s = 0
      for i = 1, M do s = s + v[base + i] end
      local mean = s / M
      local var = 0
      for i = 1, M do var = var + (v[base + i] - mean) ^ 2 end
      var = var / M
      for i = 1, M do
        local c = g * C / G + math.floor((i - 1) / S)
        local y = (v[base + i] - mean) / math.sqrt(var + eps)
        out[base + i] = y * (wv and wv[c + 1] or 1) + (bv and bv[c + 1] or 0)
      end
    end
  end
  return ddpm.tensor(out, { dtype = ddpm.float64 }):view(shape)
end

local function naive_layer_norm(x, D, w, b, eps)
  local v = x:double():contiguous():totable_flat()
  local wv, bv = w and w:double():contiguous():view(-1):totable_flat(), b and b:double():contiguous():view(-1):totable_flat()
  local out = {}
  for r = 0, #v / D - 1 do
    local s, var = 0, 0
    for i = 1, D do s = s + v[r * D + i] end
    local mean = s / D
    for i = 1, D do var = var + (v[r * D + i] - mean) ^ 2 end
    var = var / D
    for i = 1, D do
      out[r * D + i] = (v[r * D + i] - mean) / math.sqrt(var + eps) * (wv and wv[i] or 1) + (bv and bv[i] or 0)
    end
  end
  return ddpm.tensor(out, { dtype = ddpm.float64 }):view(x:shape())
end

describe('F.group_norm', function()
  local cases = { { { 2, 6, 4, 3 }, 3 }, { { 3, 4, 5 }, 2 }, { { 2, 8, 2, 2, 2 }, 8 }, { { 4, 6 }, 1 }, { { 2, 32, 4, 4 }, 32 } }
  for _, cs in ipairs(cases) do
    local shape, G = cs[1], cs[2]
    it(string.format('matches a naive loop on [%s] with %d groups', table.concat(shape, ', '), G), function()
      local gen = ddpm.Generator():manual_seed(3)
      local x = ddpm.randn(shape, { generator = gen }) * 3 + 1
      local w = ddpm.randn(shape[2], { generator = gen })
      local b = ddpm.randn(shape[2], { generator = gen })
      testing.assert_close(F.group_norm(x, G, w, b, 1e-5), naive_group_norm(x, G, w, b, 1e-5), { rtol = 1e-5, atol = 2e-5 })
      testing.assert_close(F.group_norm(x, G), naive_group_norm(x, G, nil, nil, 1e-5), { rtol = 1e-5, atol = 2e-5 })
      testing.assert_close(F.group_norm(x:double(), G, w:double(), nil, 0.1),
        naive_group_norm(x, G, w, nil, 0.1), { rtol = 1e-12, atol = 1e-12 })
    end)
    it(string.format('passes gradcheck on [%s] with %d groups', table.concat(shape, ', '), G), function()
      local gen = ddpm.Generator():manual_seed(4)
      local o = { dtype = ddpm.float64, generator = gen, requires_grad = true }
      local x, w, b = ddpm.randn(shape, o), ddpm.randn(shape[2], o), ddpm.randn(shape[2], o)
      testing.gradcheck(function(xx, ww, bb) return F.group_norm(xx, G, ww, bb, 1e-5) end, { x, w, b }, { max_elements = 50 })
      testing.gradcheck(function(xx, ww, bb) return F.group_norm_silu(xx, G, ww, bb, 1e-5) end, { x, w, b },
        { max_elements = 50 })
      testing.gradcheck(function(xx) return F.group_norm(xx, G) end, { x }, { max_elements = 50 })
    end)
  end

  it('takes non-contiguous inputs', function()
    local gen = ddpm.Generator():manual_seed(5)
    local o = { dtype = ddpm.float64, generator = gen, requires_grad = true }
    local xt = ddpm.randn(3, 4, 6, o) -- x = xt:transpose(0, 1): [4, 3, 6]
    local w = ddpm.randn(3, o)
    local f = function(xx, ww) return F.group_norm(xx:transpose(0, 1), 3, ww, nil, 1e-5) end
    testing.assert_close(f(xt, w), naive_group_norm(xt:transpose(0, 1), 3, w, nil, 1e-5), { rtol = 1e-12, atol = 1e-12 })
    testing.gradcheck(f, { xt, w }, { max_elements = 40 })
  end)

  it('fused group_norm_silu equals silu(group_norm) exactly, values and gradients', function()
    for _, shape in ipairs({ { 4, 64, 8, 8 }, { 2, 6, 5 }, { 3, 32, 16, 16 } }) do
      local gen = ddpm.Generator():manual_seed(9)
      local C = shape[2]
      local G = C % 32 == 0 and 32 or 3
      local x0 = ddpm.randn(shape, { generator = gen }) * 2
      local w0, b0 = ddpm.randn(C, { generator = gen }), ddpm.randn(C, { generator = gen })
      local g = ddpm.randn(shape, { generator = gen })
      local function run(fused)
        local x, w, b = x0:clone():requires_grad_(), w0:clone():requires_grad_(), b0:clone():requires_grad_()
        local y = fused and F.group_norm_silu(x, G, w, b, 1e-6) or F.silu(F.group_norm(x, G, w, b, 1e-6))
        y:backward(g)
        return y, x.grad, w.grad, b.grad
      end
      local y1, gx1, gw1, gb1 = run(true)
      local y2, gx2, gw2, gb2 = run(false)
      assert.is_true(y1:equal(y2), 'values')
      assert.is_true(gx1:equal(gx2), 'input gradient')
      assert.is_true(gw1:equal(gw2), 'weight gradient')
      assert.is_true(gb1:equal(gb2), 'bias gradient')
      assert.are.equal('GroupNormSiluBackward0', F.group_norm_silu(x0:clone():requires_grad_(), G).grad_fn)
    end
  end)

  it('raises clear errors', function()
    local function err(fn) local ok, e = pcall(fn); assert.is_false(ok); return e end
    assert.matches('group_norm: num_groups=5 does not divide the 64 channels of input float32%[2, 64, 4, 4%]',
      err(function() return F.group_norm(ddpm.randn(2, 64, 4, 4), 5) end))
    assert.matches('weight float32%[32%] on cpu must be %[64%]',
      err(function() return F.group_norm(ddpm.randn(2, 64, 4, 4), 32, ddpm.ones(32)) end))
    assert.matches('must be a floating point tensor',
      err(function() return F.group_norm(ddpm.ones(2, 4, 2, { dtype = ddpm.int64 }), 2) end))
    assert.matches('_spec.lua:%d+: group_norm_silu: expected an input %[N, C, %*%]',
      err(function() return F.group_norm_silu(ddpm.randn(4), 2) end))
  end)
end)

describe('F.layer_norm', function()
  local cases = { { { 4, 8 }, { 8 } }, { { 2, 3, 5 }, { 5 } }, { { 2, 3, 4 }, { 3, 4 } }, { { 6 }, 6 } }
  for _, cs in ipairs(cases) do
    local shape, ns = cs[1], cs[2]
    local nst = type(ns) == 'number' and { ns } or ns
    local D = 1
    for _, v in ipairs(nst) do D = D * v end
    it(string.format('matches a naive loop and passes gradcheck on [%s]', table.concat(shape, ', ')), function()
      local gen = ddpm.Generator():manual_seed(7)
      local x = ddpm.randn(shape, { generator = gen }) * 2 - 1
      local w, b = ddpm.randn(nst, { generator = gen }), ddpm.randn(nst, { generator = gen })
      testing.assert_close(F.layer_norm(x, ns, w, b), naive_layer_norm(x, D, w, b, 1e-5), { rtol = 1e-5, atol = 2e-5 })
      testing.assert_close(F.layer_norm(x, ns), naive_layer_norm(x, D, nil, nil, 1e-5), { rtol = 1e-5, atol = 2e-5 })
      testing.assert_close(F.layer_norm(x:double(), ns, nil, b:double(), 1e-3), naive_layer_norm(x, D, nil, b, 1e-3),
        { rtol = 1e-12, atol = 1e-12 })
      local o = { dtype = ddpm.float64, generator = gen, requires_grad = true }
      local xd, wd, bd = ddpm.randn(shape, o), ddpm.randn(nst, o), ddpm.randn(nst, o)
      testing.gradcheck(function(xx, ww, bb) return F.layer_norm(xx, ns, ww, bb) end, { xd, wd, bd }, { max_elements = 50 })
      testing.gradcheck(function(xx, ww) return F.layer_norm(xx, ns, ww) end, { xd, wd }, { max_elements = 50 })
    end)
  end

  it('handles many rows across threads and non-contiguous inputs', function()
    local gen = ddpm.Generator():manual_seed(8)
    local x = ddpm.randn(64, 300, 16, { generator = gen })
    local w, b = ddpm.randn(16, { generator = gen }), ddpm.randn(16, { generator = gen })
    local y = F.layer_norm(x, 16, w, b)
    local row = x:select(0, 40):select(0, 7)
    testing.assert_close(y:select(0, 40):select(0, 7), naive_layer_norm(row, 16, w, b, 1e-5), { rtol = 1e-5, atol = 2e-5 })
    -- weight gradient summed over 19200 rows agrees with the composite formula in float64
    local xd = x:double():requires_grad_()
    local wd = w:double():requires_grad_()
    F.layer_norm(xd, 16, wd):sum():backward()
    local xhat = (xd:detach() - xd:detach():mean(-1, true)) / (xd:detach():var(-1, { correction = 0, keepdim = true }) + 1e-5):sqrt()
    testing.assert_close(wd.grad, xhat:sum({ 0, 1 }), { rtol = 1e-9, atol = 1e-9 })
    local o = { dtype = ddpm.float64, generator = gen, requires_grad = true }
    local xt = ddpm.randn(5, 3, o)
    testing.gradcheck(function(xx) return F.layer_norm(xx:t(), 5) end, { xt })
  end)

  it('raises clear errors', function()
    local function err(fn) local ok, e = pcall(fn); assert.is_false(ok); return e end
    assert.matches('layer_norm: normalized_shape=%[64%] expects an input %[%*, 64%], got float32%[2, 32%]',
      err(function() return F.layer_norm(ddpm.randn(2, 32), { 64 }) end))
    assert.matches('weight float32%[8%] on cpu must have the normalized_shape %[32%]',
      err(function() return F.layer_norm(ddpm.randn(2, 32), 32, ddpm.ones(8)) end))
  end)
end)
