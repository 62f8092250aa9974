-- cuda_rng_spec.lua: a seed gives the same random numbers on the CPU and on the GPU (one Philox
-- counter per element, shared mappings in engine/src/random_map.h).
local ddpm = require 'ddpm'
local U = require 'cuda_testutil'
local testing = require 'ddpm.testing'

describe('CUDA random numbers equal the CPU ones for the same seed', function()
  if not U.gpu() then pending('needs a CUDA GPU: random kernels vs CPU') return end

  local function both(draw)
    local g = ddpm.Generator():manual_seed(20240611)
    local c = draw(g, 'cpu')
    local off_c = g:offset()
    g:manual_seed(20240611)
    local d = draw(g, U.dev)
    assert.are.equal(U.dry and 'cpu' or 'cuda', d.device.type)
    assert.are.equal(off_c, g:offset())
    return c, d:cpu()
  end

  it('rand and randn in float32 are bit-identical', function()
    for _, n in ipairs({ 1, 7, 1000, 65537 }) do
      local c, d = both(function(g, dev) return ddpm.rand(n, { generator = g, device = dev }) end)
      assert.is_true(c:equal(d), 'rand ' .. n)
      c, d = both(function(g, dev) return ddpm.randn(n, { generator = g, device = dev }) end)
      -- Box-Muller runs in double; libm and CUDA's log/cos may differ in the last double bit,
      -- which essentially never survives rounding to float32
      testing.assert_close(d, c, { rtol = 0, atol = 1e-6 })
      assert.is_true(c:ne(d):sum():item() <= 1, 'randn ' .. n .. ': more than one element differs')
    end
  end)

  it('float64, float16 and bfloat16 draws agree', function()
    local c, d = both(function(g, dev) return ddpm.rand(5000, { generator = g, device = dev, dtype = ddpm.float64 }) end)
    assert.is_true(c:equal(d))
    c, d = both(function(g, dev) return ddpm.randn(5000, { generator = g, device = dev, dtype = ddpm.float64 }) end)
    testing.assert_close(d, c, { rtol = 1e-14, atol = 1e-14 })
    for _, dt in ipairs({ 'float16', 'bfloat16' }) do
      c, d = both(function(g, dev) return ddpm.randn(5000, { generator = g, device = dev, dtype = ddpm[dt] }) end)
      testing.assert_close(d, c, U.tol[dt])
      c, d = both(function(g, dev) return ddpm.rand(5000, { generator = g, device = dev, dtype = ddpm[dt] }) end)
      assert.is_true(c:equal(d), 'rand ' .. dt)
    end
  end)

  it('normal with mean/std, randint, bernoulli, and fills of non-contiguous views agree', function()
    local c, d = both(function(g, dev) return ddpm.normal(2, 0.5, { 300 }, { generator = g, device = dev }) end)
    testing.assert_close(d, c, { rtol = 0, atol = 1e-6 })
    for _, dt in ipairs({ 'int64', 'int32', 'uint8' }) do
      c, d = both(function(g, dev) return ddpm.randint(-3 * (dt == 'uint8' and 0 or 1), 200, { 999 }, { generator = g, device = dev, dtype = ddpm[dt] }) end)
      assert.is_true(c:equal(d), 'randint ' .. dt)
    end
    local p = ddpm.rand(2000, { generator = ddpm.Generator():manual_seed(1) })
    c, d = both(function(g, dev) return ddpm.bernoulli(p:to(dev), { generator = g }) end)
    assert.is_true(c:equal(d), 'bernoulli')
    c, d = both(function(g, dev)
      local t = ddpm.zeros(40, 30, { device = dev })
      assert.are.equal(0, ddpm.C.ddpm_uniform_(t:t(), -1, 1, g.handle))
      return t
    end)
    assert.is_true(c:equal(d), 'uniform_ into a transposed view')
  end)

  it('the default generator drives both devices', function()
    ddpm.manual_seed(77)
    local a = ddpm.randn(64)
    ddpm.cuda.manual_seed(77)
    local b = ddpm.randn(64, { device = U.dev })
    testing.assert_close(b:cpu(), a, { rtol = 0, atol = 1e-6 })
  end)
end)
