-- cuda_ops_spec.lua: every core op's CUDA kernel against the CPU one: values and gradients, with
-- random, broadcast and non-contiguous inputs, in float32, float64, float16 and bfloat16 (and the
-- integer dtypes where the op takes them).
local ddpm = require 'ddpm'
local U = require 'cuda_testutil'
local compare, tol = U.compare, U.tol
-- While tensors are pointer cdata, LuaJIT's JIT may compile `t + number` as pointer arithmetic and
-- crash on long op mixes like this spec's (the core branch makes tensors references, which fixes
-- it); the kernels are what this spec checks, so it runs interpreted.
jit.off()

local gen = ddpm.Generator():manual_seed(1234)
local function randn(...)
  local a = { ... }
  a[#a + 1] = { generator = gen }
  return ddpm.randn(unpack(a))
end
local function with(t, o) local r = {} for k, v in pairs(t) do r[k] = v end for k, v in pairs(o) do r[k] = v end return r end

local FLOATS = { 'float32', 'float64', 'float16', 'bfloat16' }
local _ = ddpm.nn.functional -- adds t:silu(), t:gelu()

describe('CUDA elementwise ops match the CPU', function()
  if not U.gpu() then pending('needs a CUDA GPU: elementwise kernels vs CPU') return end

  local unary = {
    { 'exp', function(x) return x:exp() end },
    { 'log', function(x) return (x:abs() + 0.1):log() end },
    { 'sqrt', function(x) return (x:abs() + 0.1):sqrt() end },
    { 'rsqrt', function(x) return (x:abs() + 0.1):rsqrt() end },
    { 'sin', function(x) return x:sin() end },
    { 'cos', function(x) return x:cos() end },
    { 'tanh', function(x) return x:tanh() end },
    { 'sigmoid', function(x) return x:sigmoid() end },
    { 'relu', function(x) return x:relu() end },
    { 'silu', function(x) return x:silu() end },
    { 'gelu', function(x) return x:gelu() end },
    { 'gelu_tanh', function(x) return x:gelu({ approximate = 'tanh' }) end },
    { 'neg', function(x) return -x end },
    { 'abs', function(x) return x:abs() end },
    { 'add_scalar', function(x) return x + 1.5 end },
    { 'mul_scalar', function(x) return x * -2.5 end },
    { 'div_scalar', function(x) return x / 3 end },
    { 'rdiv_scalar', function(x) return 2 / (x:abs() + 0.5) end },
    { 'pow2', function(x) return x ^ 2 end },
    { 'pow3', function(x) return x ^ 3 end },
    { 'pow_half', function(x) return (x:abs() + 0.1) ^ 0.5 end },
    { 'pow_-1', function(x) return (x:abs() + 0.5) ^ -1 end },
    { 'pow_1.7', function(x) return (x:abs() + 0.1) ^ 1.7 end },
    { 'rpow', function(x) return 2 ^ x end },
    { 'clamp', function(x) return x:clamp(-0.5, 0.7) end },
  }
  for _, dt in ipairs(FLOATS) do
    for _, u in ipairs(unary) do
      it(u[1] .. ' ' .. dt .. ' (contiguous, transposed, sliced) with gradients', function()
        local x = randn(37, 29):to(ddpm[dt])
        local t = with(tol[dt], { grad = true, name = u[1] .. ' ' .. dt })
        if dt == 'float16' or dt == 'bfloat16' then t.grtol, t.gatol = 5e-2, 5e-2 end
        compare(u[2], { x }, t)
        compare(function(a) return u[2](a:t()) end, { x }, t)
        compare(function(a) return u[2](a:slice(0, 1, 37, 3):slice(1, 2, 29, 2)) end, { x }, t)
      end)
    end
  end

  it('non-differentiable unary ops: sign, floor, ceil, round', function()
    for _, dt in ipairs(FLOATS) do
      local x = (randn(64, 33) * 4):to(ddpm[dt])
      for _, f in ipairs({ 'sign', 'floor', 'ceil', 'round' }) do
        compare(function(a) return a[f](a) end, { x }, { exact = true, name = f .. ' ' .. dt })
        compare(function(a) return a:t()[f](a:t()) end, { x }, { exact = true, name = f .. ' ' .. dt .. ' transposed' })
      end
    end
    -- round is half-to-even, like PyTorch
    compare(function(a) return a:round() end, { ddpm.tensor({ 0.5, 1.5, 2.5, -0.5, -1.5 }) }, { exact = true })
  end)

  it('integer and bool unary/scalar ops', function()
    for _, dt in ipairs({ 'int64', 'int32', 'uint8' }) do
      local x = ddpm.randint(0, 100, { 50, 7 }, { generator = gen }):to(ddpm[dt])
      for _, f in ipairs({ function(a) return a + 3 end, function(a) return a * 2 end, function(a) return a:abs() end,
        function(a) return a:clamp(10, 60) end, function(a) return a ^ 2 end, function(a) return a:relu() end,
        function(a) return a:t():sign() end }) do
        compare(f, { x }, { exact = true, name = dt })
      end
    end
    local i = ddpm.randint(-50, 50, { 40 }, { generator = gen })
    compare(function(a) return -a end, { i }, { exact = true, name = 'neg int64' })
  end)

  local binary = {
    { 'add', function(a, b) return a + b end },
    { 'sub', function(a, b) return a - b end },
    { 'mul', function(a, b) return a * b end },
    { 'div', function(a, b) return a / (b:abs() + 0.5) end },
    { 'pow', function(a, b) return (a:abs() + 0.5) ^ b end },
    { 'maximum', function(a, b) return ddpm.maximum(a, b) end },
    { 'minimum', function(a, b) return ddpm.minimum(a, b) end },
  }
  for _, dt in ipairs(FLOATS) do
    for _, b in ipairs(binary) do
      it(b[1] .. ' ' .. dt .. ' (same shape, broadcast, scalar, non-contiguous) with gradients', function()
        local t = with(tol[dt], { grad = true, name = b[1] .. ' ' .. dt })
        if dt == 'float16' or dt == 'bfloat16' then t.grtol, t.gatol = 5e-2, 5e-2 end
        compare(b[2], { randn(4, 5, 6):to(ddpm[dt]), randn(4, 5, 6):to(ddpm[dt]) }, t)
        compare(b[2], { randn(4, 5, 6):to(ddpm[dt]), randn(5, 1):to(ddpm[dt]) }, t)
        compare(b[2], { randn(1, 6):to(ddpm[dt]), randn(4, 5, 1):to(ddpm[dt]) }, t)
        compare(b[2], { randn(3, 7):to(ddpm[dt]), ddpm.tensor(0.75):to(ddpm[dt]) }, t)
        compare(function(x, y) return b[2](x:permute(2, 0, 1), y:t()) end,
          { randn(5, 6, 7):to(ddpm[dt]), randn(6, 5):to(ddpm[dt]) }, t)
        -- a big contiguous case takes the vectorised path
        compare(b[2], { randn(1000, 33):to(ddpm[dt]), randn(1000, 33):to(ddpm[dt]) }, t)
      end)
    end
  end

  it('maximum/minimum propagate NaN, as the CPU does', function()
    local nan = 0 / 0
    local a = ddpm.tensor({ 1, nan, 3, nan }) ; local b = ddpm.tensor({ nan, 2, 1, nan })
    local g = ddpm.maximum(a:to(U.dev), b:to(U.dev)):cpu()
    local c = ddpm.maximum(a, b)
    for k = 0, 3 do
      local x, y = g:select(0, k):item(), c:select(0, k):item()
      assert.is_true((x ~= x and y ~= y) or x == y)
    end
  end)

  it('integer binary ops and comparisons', function()
    local a = ddpm.randint(-20, 20, { 6, 9 }, { generator = gen })
    local b = ddpm.randint(1, 20, { 9 }, { generator = gen })
    for _, f in ipairs({ function(x, y) return x + y end, function(x, y) return x - y end, function(x, y) return x * y end,
      function(x, y) return ddpm.maximum(x, y) end, function(x, y) return x:t() * 1 end }) do
      compare(f, { a, b }, { exact = true, name = 'int64 binary' })
    end
    for _, dt in ipairs({ 'float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'uint8' }) do
      local x = ddpm.randint(0, 4, { 7, 8 }, { generator = gen }):to(ddpm[dt])
      local y = ddpm.randint(0, 4, { 8 }, { generator = gen }):to(ddpm[dt])
      for _, f in ipairs({ 'eq', 'ne', 'lt', 'le', 'gt', 'ge' }) do
        compare(function(p, q) return p[f](p, q) end, { x, y }, { exact = true, name = f .. ' ' .. dt })
      end
    end
  end)

  it('where with broadcasting, every dtype, and its gradient', function()
    local cond = randn(6, 1, 5):gt(0)
    for _, dt in ipairs(FLOATS) do
      compare(function(c, a, b) return ddpm.where(c, a, b) end,
        { cond, randn(6, 4, 5):to(ddpm[dt]), randn(4, 1):to(ddpm[dt]) }, with(tol[dt], { grad = true, name = 'where ' .. dt }))
    end
    for _, dt in ipairs({ 'int64', 'int32', 'uint8', 'bool' }) do
      compare(function(c, a, b) return ddpm.where(c, a, b) end,
        { cond, ddpm.ones(6, 4, 5):to(ddpm[dt]), ddpm.zeros(4, 1):to(ddpm[dt]) }, { exact = true, name = 'where ' .. dt })
    end
  end)

  it('in-place ops on CUDA tensors', function()
    local x = randn(8, 9)
    local g = x:to(U.dev)
    x:add_(ddpm.ones(9), { alpha = 2 }):mul_(3):clamp_(-2, 4):div_(ddpm.full({ 8, 1 }, 1.5))
    g:add_(ddpm.ones(9):to(U.dev), { alpha = 2 }):mul_(3):clamp_(-2, 4):div_(ddpm.full({ 8, 1 }, 1.5):to(U.dev))
    require('ddpm.testing').assert_close(g:cpu(), x)
  end)
end)

describe('CUDA copies, conversions and fills match the CPU', function()
  if not U.gpu() then pending('needs a CUDA GPU: copy/convert kernels vs CPU') return end
  local ALL = { 'float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'uint8', 'bool' }

  it('converts between every pair of dtypes like the CPU (contiguous and strided)', function()
    local x = (randn(13, 11) * 300)
    x = ddpm.where(randn(13, 11):gt(1), ddpm.zeros(1), x)
    for _, from in ipairs(ALL) do
      local src = x:to(ddpm[from])
      for _, to in ipairs(ALL) do
        compare(function(a) return a:to(ddpm[to]) end, { src }, { exact = true, name = from .. '->' .. to })
        compare(function(a) return a:t():to(ddpm[to]) end, { src }, { exact = true, name = from .. '->' .. to .. ' (T)' })
      end
    end
  end)

  it('contiguous, clone, copy_ with broadcast, fill_ and zero_ on views', function()
    local x = randn(6, 7, 8)
    compare(function(a) return a:permute(2, 0, 1):contiguous() end, { x }, { exact = true })
    compare(function(a) return a:slice(2, 1, 8, 3):clone() end, { x }, { exact = true })
    for _, dt in ipairs(ALL) do
      local c = ddpm.zeros(5, 6, { dtype = ddpm[dt] })
      local g = ddpm.zeros(5, 6, { dtype = ddpm[dt], device = U.dev })
      c:slice(1, 0, 6, 2):fill_(3)
      g:slice(1, 0, 6, 2):fill_(3)
      local src = ddpm.arange(3):to(ddpm[dt]):view(1, 3) -- broadcast over the rows
      c:slice(1, 1, 6, 2):copy_(src)
      g:slice(1, 1, 6, 2):copy_(src:to(U.dev))
      assert.is_true(c:equal(g:cpu()), 'fill_/copy_ ' .. dt)
    end
    local a = ddpm.ones(4, 5, { device = U.dev })
    a:slice(0, 1, 3):zero_()
    assert.are.equal(10, a:sum():item())
    -- copy_ from CPU into a strided CUDA view and back
    local d = ddpm.zeros(4, 6, { device = U.dev })
    d:t():copy_(ddpm.arange(24):float():view(6, 4))
    assert.is_true(d:cpu():equal(ddpm.arange(24):float():view(6, 4):t()))
  end)

  it('fills every dtype with the host conversion of the value', function()
    for _, dt in ipairs(ALL) do
      for _, v in ipairs({ 0, 1, -2.75, 1e30, 300.5 }) do
        local c = ddpm.full({ 3, 4 }, v, { dtype = ddpm[dt] })
        local g = ddpm.full({ 3, 4 }, v, { dtype = ddpm[dt], device = U.dev })
        assert.is_true(c:equal(g:cpu()), 'fill ' .. dt .. ' ' .. v)
      end
    end
  end)
end)

describe('CUDA reductions match the CPU', function()
  if not U.gpu() then pending('needs a CUDA GPU: reduction kernels vs CPU') return end

  it('sum/mean/amax/amin over dim sets, keepdim, non-contiguous, with gradients', function()
    for _, dt in ipairs(FLOATS) do
      local t = with(tol[dt], { grad = true, name = 'reduce ' .. dt })
      if dt == 'float16' or dt == 'bfloat16' then t.rtol, t.atol = 2e-2, 5e-2 end
      local x = randn(5, 6, 7, 8):to(ddpm[dt])
      for _, dims in ipairs({ 0, 1, 3, { 0, 2 }, { 1, 3 }, { 0, 2, 3 }, { 0, 1, 2, 3 } }) do
        for _, keep in ipairs({ false, true }) do
          compare(function(a) return a:sum(dims, keep) end, { x }, t)
          compare(function(a) return a:mean(dims, keep) end, { x }, t)
          compare(function(a) return a:amax(dims, keep) end, { x }, t)
          compare(function(a) return a:amin(dims, keep) end, { x }, t)
        end
      end
      compare(function(a) return a:sum() end, { x }, t)
      compare(function(a) return a:permute(3, 1, 0, 2):sum({ 1, 2 }) end, { x }, t)
      compare(function(a) return a:slice(2, 0, 7, 2):amax(2) end, { x }, t)
      compare(function(a) return a:var(1) end, { x }, t)
    end
  end)

  it('long rows, long columns and split reductions', function()
    local t = { rtol = 1e-5, atol = 1e-4, grad = true }
    compare(function(a) return a:sum(1) end, { randn(3, 300000) }, t)   -- few long rows (split)
    compare(function(a) return a:sum(0) end, { randn(20000, 64) }, t)   -- bias-gradient shape (columns)
    compare(function(a) return a:sum({ 0, 2, 3 }) end, { randn(32, 16, 24, 24) }, t) -- conv bias gradient
    compare(function(a) return a:sum() end, { randn(1000003) }, { rtol = 1e-5, atol = 1e-3 })
    compare(function(a) return a:amax() end, { randn(1000003) }, { exact = true })
    compare(function(a) return a:sum(1) end, { randn(100000, 3) }, t)   -- many tiny rows
  end)

  it('argmax/argmin/max(dim)/min(dim): ties keep the first index, NaN wins', function()
    local x = ddpm.randint(0, 5, { 9, 300 }, { generator = gen }):float() -- many ties
    for _, d in ipairs({ 0, 1 }) do
      compare(function(a) return a:argmax(d) end, { x }, { exact = true })
      compare(function(a) return a:argmin(d) end, { x }, { exact = true })
      compare(function(a) return { a:max(d) } end, { x }, { exact = true })
      compare(function(a) return { a:min(d, true) } end, { x }, { exact = true })
    end
    compare(function(a) return a:argmax() end, { randn(70000) }, { exact = true })
    local nan = 0 / 0
    local y = ddpm.tensor({ { 1, nan, 3, nan }, { 2, 2, 1, 0 } })
    compare(function(a) return a:argmax(1) end, { y }, { exact = true })
    compare(function(a) return a:argmin(1) end, { y }, { exact = true })
    for _, dt in ipairs({ 'int64', 'int32', 'uint8', 'float16', 'bfloat16', 'float64' }) do
      local z = ddpm.randint(0, 50, { 17, 23 }, { generator = gen }):to(ddpm[dt])
      compare(function(a) return { a:argmax(1), a:amax(0), a:sum(1) } end, { z }, { exact = dt ~= 'float16' and dt ~= 'bfloat16', rtol = 1e-2, atol = 1 })
    end
    local b = randn(10, 10):gt(0)
    compare(function(a) return { a:sum(), a:amax(1), a:amin(0) } end, { b }, { exact = true })
  end)

  it('cannot take amax of an empty dim on CUDA either', function()
    local ok, err = pcall(function() return ddpm.zeros(3, 0, { device = U.dev }):amax(1) end)
    assert.is_false(ok)
    assert.matches('empty', err)
    assert.are.equal(0, ddpm.zeros(3, 0, { device = U.dev }):sum():item())
  end)
end)

describe('CUDA matmul, bmm and linear match the CPU', function()
  if not U.gpu() then pending('needs a CUDA GPU: cuBLAS kernels vs CPU') return end
  local mtol = {
    float32 = { rtol = 1e-4, atol = 1e-4 }, float64 = { rtol = 1e-10, atol = 1e-10 },
    float16 = { rtol = 1e-2, atol = 2e-2 }, bfloat16 = { rtol = 3e-2, atol = 8e-2 },
  }
  for _, dt in ipairs(FLOATS) do
    it('matmul/bmm ' .. dt .. ': plain, transposed, broadcast batch, 1-D, with gradients', function()
      local t = with(mtol[dt], { grad = true, name = 'matmul ' .. dt })
      local D = ddpm[dt]
      compare(function(a, b) return a:matmul(b) end, { randn(33, 17):to(D), randn(17, 9):to(D) }, t)
      compare(function(a, b) return a:t():matmul(b:t()) end, { randn(17, 33):to(D), randn(9, 17):to(D) }, t)
      compare(function(a, b) return a:bmm(b) end, { randn(4, 8, 16):to(D), randn(4, 16, 5):to(D) }, t)
      compare(function(a, b) return a:bmm(b:transpose(1, 2)) end, { randn(4, 8, 16):to(D), randn(4, 5, 16):to(D) }, t)
      compare(function(a, b) return a:matmul(b) end, { randn(2, 3, 8, 16):to(D), randn(16, 5):to(D) }, t)
      compare(function(a, b) return a:matmul(b) end, { randn(3, 1, 8, 16):to(D), randn(4, 16, 5):to(D) }, t)
      compare(function(a, b) return a:matmul(b) end, { randn(16):to(D), randn(16, 5):to(D) }, t)
      compare(function(a, b) return a:matmul(b) end, { randn(7, 16):to(D), randn(16):to(D) }, t)
      -- neither rows nor columns contiguous: packed first
      compare(function(a, b) return a:slice(1, 0, 32, 2):matmul(b) end, { randn(9, 32):to(D), randn(16, 4):to(D) }, t)
      compare(function(a, b) return a:matmul(b) end, { randn(0, 16):to(D), randn(16, 4):to(D) }, t)
      compare(function(a, b) return a:matmul(b) end, { randn(3, 0):to(D), randn(0, 4):to(D) }, { exact = true })
    end)
    it('linear ' .. dt .. ' with and without bias (cuBLASLt epilogue), 3-D input, with gradients', function()
      local t = with(mtol[dt], { grad = true, name = 'linear ' .. dt })
      local D = ddpm[dt]
      local lin = ddpm.nn.functional.linear
      compare(lin, { randn(32, 64):to(D), randn(48, 64):to(D), randn(48):to(D) }, t)
      compare(lin, { randn(5, 7, 64):to(D), randn(48, 64):to(D), randn(48):to(D) }, t)
      compare(lin, { randn(5, 64):to(D), randn(48, 64):to(D) }, t)
      compare(function(x, w, b) return lin(x:t(), w:t(), b) end, { randn(64, 5):to(D), randn(64, 48):to(D), randn(48):to(D) }, t)
      compare(function(x, w, b) return lin(x, w, b:slice(0, 0, 96, 2)) end, { randn(6, 64):to(D), randn(48, 64):to(D), randn(96):to(D) }, t)
      compare(lin, { randn(3, 1):to(D), randn(1, 1):to(D), randn(1):to(D) }, t)
      compare(lin, { randn(2, 3):to(D), randn(5, 3):to(D), randn(5):to(D) }, t) -- unaligned sizes
    end)
  end

  it('allow_tf32 switches float32 matmuls to TF32 (close to float32, not bit-equal in general)', function()
    local a, b = randn(256, 256), randn(256, 256)
    local exact = a:matmul(b)
    ddpm.backends.cuda.matmul.allow_tf32 = true
    local ok, r = pcall(function() return a:to(U.dev):matmul(b:to(U.dev)):cpu() end)
    ddpm.backends.cuda.matmul.allow_tf32 = false
    assert.is_true(ok, r)
    require('ddpm.testing').assert_close(r, exact, { rtol = 1e-2, atol = 5e-2 })
  end)
end)

describe('CUDA cat, stack, index_select and index_add_ match the CPU', function()
  if not U.gpu() then pending('needs a CUDA GPU: joining and indexing kernels vs CPU') return end

  it('cat and stack with mixed dtypes and views, with gradients', function()
    for _, dt in ipairs(FLOATS) do
      local t = with(tol[dt], { grad = true, name = 'cat ' .. dt })
      compare(function(a, b, c) return ddpm.cat({ a, b:t(), c }, 1) end,
        { randn(4, 3):to(ddpm[dt]), randn(5, 4):to(ddpm[dt]), randn(4, 2):to(ddpm[dt]) }, t)
      compare(function(a, b) return ddpm.stack({ a, b }, 1) end, { randn(4, 3):to(ddpm[dt]), randn(4, 3):to(ddpm[dt]) }, t)
    end
    compare(function(a, b) return ddpm.cat({ a, b }, 0) end, { ddpm.arange(5), ddpm.randint(0, 9, { 3 }) }, { exact = true })
  end)

  it('index_select along each dim (int64 and int32 indices, repeats, negative), with gradients', function()
    for _, dt in ipairs(FLOATS) do
      local x = randn(6, 7, 8):to(ddpm[dt])
      local t = with(tol[dt], { grad = true, name = 'index_select ' .. dt })
      for d = 0, 2 do
        local idx = ddpm.tensor({ 0, 3, 3, -1, 2 }, { dtype = ddpm.int64 })
        compare(function(a, i) return a:index_select(d, i) end, { x, idx }, t)
        compare(function(a, i) return a:transpose(0, 2):index_select(d, i) end, { x, idx:int() }, t)
      end
    end
    local e = ddpm.randint(0, 1000, { 64, 16 }, { generator = gen })
    compare(function(a, i) return a:index_select(0, i) end, { e, ddpm.tensor({ 5, 1, 63 }, { dtype = ddpm.int64 }) }, { exact = true })
  end)

  it('index_add_ accumulates repeated indices for every dtype', function()
    for _, dt in ipairs({ 'float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'uint8' }) do
      local base = ddpm.zeros(5, 4, { dtype = ddpm[dt] })
      local src = ddpm.randint(0, 5, { 6, 4 }, { generator = gen }):to(ddpm[dt])
      local idx = ddpm.tensor({ 0, 2, 2, 4, 0, 2 }, { dtype = ddpm.int64 })
      local c = base:clone():index_add_(0, idx, src)
      local g = base:to(U.dev):index_add_(0, idx:to(U.dev), src:to(U.dev))
      require('ddpm.testing').assert_close(g:cpu(), c, { atol = 0, rtol = 0 })
      -- into a transposed destination
      local c2 = ddpm.zeros(4, 5, { dtype = ddpm[dt] })
      local g2 = ddpm.zeros(4, 5, { dtype = ddpm[dt], device = U.dev })
      c2:t():index_add_(0, idx, src)
      g2:t():index_add_(0, idx:to(U.dev), src:to(U.dev))
      require('ddpm.testing').assert_close(g2:cpu(), c2, { atol = 0, rtol = 0 })
    end
  end)
end)

describe('CUDA kernels on more than 2^31 elements', function()
  if not U.gpu() or U.dry then pending('needs a CUDA GPU: 64-bit indexing paths') return end
  if ddpm.cuda.mem_get_info() < 8e9 then pending('needs 8 GB of free GPU memory: 64-bit indexing paths') return end
  it('split elementwise launches and 64-bit reductions (about 6 GB of GPU memory)', function()
    local n = 2 ^ 31 + 4099
    local x = ddpm.full({ n }, 3, { dtype = ddpm.uint8, device = U.dev })
    local y = x + x
    assert.are.equal(6 * n, y:sum():item())
    y:slice(0, n - 5, n):fill_(1)
    assert.are.equal(1, y:amin():item())
    assert.are.equal(n - 5, y:argmin():item())
    x, y = nil, nil
    collectgarbage()
    ddpm.cuda.empty_cache()
  end)
end)
