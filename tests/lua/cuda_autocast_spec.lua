-- cuda_autocast_spec.lua: ddpm.autocast: the cast policy (matmul/bmm/linear lower float32 inputs,
-- sum/mean raise half inputs to float32), float32 gradients for float32 parameters, nesting and
-- restoring the state on errors; on 'cpu' (runs everywhere) and on 'cuda' (with a GPU).
local ddpm = require 'ddpm'
local U = require 'cuda_testutil'
local testing = require 'ddpm.testing'
local lin = ddpm.nn.functional.linear

local function policy_checks(dev, dt)
  local D = ddpm[dt]
  local x = ddpm.randn(8, 16, { device = dev })
  local w = ddpm.randn(4, 16, { device = dev }):requires_grad_()
  local b = ddpm.randn(4, { device = dev }):requires_grad_()
  local y, s, m, z = ddpm.autocast(dev, { dtype = D }, function()
    local y = lin(x, w, b)
    return y, y:sum(), y:mean(1), x:matmul(w:t()):unsqueeze(0):bmm(ddpm.ones(1, 4, 2, { device = dev }))
  end)
  assert.are.equal(D, y.dtype)
  assert.are.equal(ddpm.float32, s.dtype)
  assert.are.equal(ddpm.float32, m.dtype)
  assert.are.equal(D, z.dtype)
  -- values: the float32 computation within half precision
  testing.assert_close(y:float():cpu(), lin(x, w, b):detach():cpu(), { rtol = 3e-2, atol = 1.5e-1 })
  -- gradients reach the float32 master weights in float32
  s:backward()
  assert.are.equal(ddpm.float32, w.grad.dtype)
  assert.are.equal(ddpm.float32, b.grad.dtype)
  local wr = w:detach():clone():requires_grad_()
  lin(x, wr, b:detach()):sum():backward()
  testing.assert_close(w.grad:cpu(), wr.grad:cpu(), { rtol = 3e-2, atol = 1e-1 })
  -- float64 is left alone, as in PyTorch
  local d = ddpm.autocast(dev, { dtype = D }, function()
    return ddpm.randn(3, 3, { device = dev, dtype = ddpm.float64 }):matmul(ddpm.randn(3, 3, { device = dev, dtype = ddpm.float64 }))
  end)
  assert.are.equal(ddpm.float64, d.dtype)
end

describe('autocast on the CPU', function()
  it('applies the cast policy with bfloat16 and float16', function()
    policy_checks('cpu', 'bfloat16')
    policy_checks('cpu', 'float16')
  end)

  it('nests, can be disabled, restores the state when fn raises, and returns every result', function()
    assert.is_false(ddpm.autocast.is_enabled('cpu'))
    local a, b = ddpm.autocast('cpu', { dtype = ddpm.bfloat16 }, function()
      assert.is_true(ddpm.autocast.is_enabled('cpu'))
      local inner = ddpm.autocast('cpu', { enabled = false }, function()
        assert.is_false(ddpm.autocast.is_enabled('cpu'))
        return ddpm.ones(2, 2):matmul(ddpm.ones(2, 2)).dtype
      end)
      assert.is_true(ddpm.autocast.is_enabled('cpu'))
      assert.are.equal(ddpm.bfloat16, ddpm.autocast.get_dtype('cpu'))
      return inner, 42
    end)
    assert.are.equal(ddpm.float32, a)
    assert.are.equal(42, b)
    assert.has_error(function() ddpm.autocast('cpu', { dtype = ddpm.bfloat16 }, function() error('inside') end) end)
    assert.is_false(ddpm.autocast.is_enabled('cpu'))
    local ok, err = pcall(ddpm.autocast, 'cpu', { dtype = ddpm.int32 }, function() end)
    assert.is_false(ok)
    assert.matches('float16 or ddpm.bfloat16', err)
    ok, err = pcall(ddpm.autocast, 'tpu', {}, function() end)
    assert.is_false(ok)
    assert.matches("'cuda' or 'cpu'", err)
  end)

  it("leaves CPU tensors alone under autocast('cuda')", function()
    local r = ddpm.autocast('cuda', { dtype = ddpm.bfloat16 }, function()
      return ddpm.ones(2, 2):matmul(ddpm.ones(2, 2)).dtype
    end)
    assert.are.equal(ddpm.float32, r)
  end)
end)

describe('autocast on CUDA', function()
  if not U.gpu() then pending('needs a CUDA GPU: autocast with CUDA kernels') return end
  it('applies the cast policy with bfloat16 and float16 (tensor cores)', function()
    policy_checks('cuda', 'bfloat16')
    policy_checks('cuda', 'float16')
  end)
  it('lowers conv2d and attention; runs norms, softmax and losses in float32', function()
    local F = ddpm.nn.functional
    local x = ddpm.randn(2, 4, 8, 8, { device = 'cuda' })
    local w = ddpm.randn(8, 4, 3, 3, { device = 'cuda' }):requires_grad_()
    local q = ddpm.randn(2, 2, 5, 4, { device = 'cuda' })
    local loss = ddpm.autocast('cuda', { dtype = ddpm.bfloat16 }, function()
      local y = F.conv2d(x, w, nil, 1, 1)
      assert.are.equal(ddpm.bfloat16, y.dtype)
      local n = F.group_norm(y, 2)
      assert.are.equal(ddpm.float32, n.dtype)
      local a = F.scaled_dot_product_attention(q, q, q)
      assert.are.equal(ddpm.bfloat16, a.dtype)
      assert.are.equal(ddpm.float32, F.softmax(a, -1).dtype)
      assert.are.equal(ddpm.float32, F.layer_norm(a, { 4 }).dtype)
      local l = F.mse_loss(n, ddpm.zeros_like(n))
      assert.are.equal(ddpm.float32, l.dtype)
      return l
    end)
    loss:backward()
    assert.are.equal(ddpm.float32, w.grad.dtype)
    -- on the CPU, conv2d runs in bfloat16 (its bfloat16 kernels), but float16 stays float32
    local yc = ddpm.autocast('cpu', { dtype = ddpm.bfloat16 }, function()
      return F.conv2d(x:cpu(), w:detach():cpu(), nil, 1, 1)
    end)
    assert.are.equal(ddpm.bfloat16, yc.dtype)
    local yh = ddpm.autocast('cpu', { dtype = ddpm.float16 }, function()
      return F.conv2d(x:cpu(), w:detach():cpu(), nil, 1, 1)
    end)
    assert.are.equal(ddpm.float32, yh.dtype)
  end)
  it('defaults to float16 as torch.autocast("cuda") does', function()
    local dt = ddpm.autocast('cuda', {}, function()
      return ddpm.ones(2, 2, { device = 'cuda' }):matmul(ddpm.ones(2, 2, { device = 'cuda' })).dtype
    end)
    assert.are.equal(ddpm.float16, dt)
  end)
end)
