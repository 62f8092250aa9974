-- cuda_errors_spec.lua: clear errors for mixing devices, missing devices, out-of-range indices
-- found on the GPU (deferred, or at the op with DDPM_SYNC), and what a machine without CUDA says.
local ddpm = require 'ddpm'
local U = require 'cuda_testutil'

describe('without a usable GPU', function()
  if ddpm.cuda.is_available() then
    it('(a GPU is present: these checks run on machines without one)', function() end)
    return
  end
  if os.getenv('DDPM_REQUIRE_GPU') == '1' then
    it('DDPM_REQUIRE_GPU=1 demands a GPU', function() error('DDPM_REQUIRE_GPU=1 but no CUDA GPU is usable') end)
    return
  end

  it('moving a tensor to CUDA fails with a clear message', function()
    local ok, err = pcall(function() return ddpm.ones(2):cuda() end)
    assert.is_false(ok)
    assert.matches('cuda_errors_spec.lua:%d+: to: cannot move float32%[2%] on cpu to cuda:0', err)
    ok, err = pcall(function() return ddpm.zeros(2, { device = 'cuda' }) end)
    assert.is_false(ok)
    assert.matches('cuda:0', err)
  end)

  it('every ddpm.cuda function answers "not available" without crashing', function()
    local cuda = ddpm.cuda
    assert.is_false(cuda.is_available())
    assert.are.equal(0, cuda.device_count())
    assert.is_false(cuda.is_current_stream_capturing())
    for _, f in ipairs({ 'current_device', 'synchronize', 'memory_allocated', 'memory_reserved', 'max_memory_allocated',
      'reset_peak_memory_stats', 'empty_cache', 'mem_get_info', 'get_device_name', 'Stream', 'Event', 'CUDAGraph',
      'memory_stats', 'current_stream' }) do
      local ok, err = pcall(cuda[f])
      assert.is_false(ok, f)
      assert.is_truthy(err:match('CUDA') and (err:match('available') or err:match('without CUDA')), f .. ': ' .. tostring(err))
    end
    local ok, err = pcall(cuda.graph, function() end)
    assert.is_false(ok)
    ok, err = pcall(function() return ddpm.ones(2):pin_memory() end)
    assert.is_false(ok)
    assert.is_truthy(err:match('CUDA') and (err:match('available') or err:match('without CUDA')), err)
    assert.is_false(ddpm.ones(2):is_pinned())
    -- switches work in every build
    ddpm.backends.cuda.matmul.allow_tf32 = true
    assert.is_true(ddpm.backends.cuda.matmul.allow_tf32)
    ddpm.backends.cuda.matmul.allow_tf32 = false
    assert.has_error(function() ddpm.backends.cudnn.nonsense = true end)
  end)
end)

describe('CUDA errors', function()
  if not U.gpu() then pending('needs a CUDA GPU: device-mixing and device-side errors') return end

  it('names both devices when an op mixes them', function()
    local a, b = ddpm.ones(2, 3), ddpm.ones(2, 3, { device = 'cuda' })
    for _, f in ipairs({ function() return a + b end, function() return b * a end, function() return a:matmul(b:t()) end,
      function() return ddpm.cat({ a, b }) end, function() return ddpm.where(a:gt(0), a, b) end,
      function() return b:index_select(0, ddpm.tensor({ 0 }, { dtype = ddpm.int64 })) end,
      function() return ddpm.nn.functional.linear(b, a) end }) do
      local ok, err = pcall(f)
      assert.is_false(ok)
      assert.matches('cuda_errors_spec.lua:%d+:', err)
      assert.matches('cuda:0', err)
      assert.matches('cpu', err)
    end
  end)

  it('refuses devices that do not exist', function()
    local n = ddpm.cuda.device_count()
    local ok, err = pcall(function() return ddpm.ones(2):to('cuda:' .. n) end)
    assert.is_false(ok)
    assert.matches('cuda:' .. n, err)
    assert.matches('no such device', err)
  end)

  it('reports an out-of-range index found by a kernel at the next synchronisation', function()
    local x = ddpm.randn(5, 3, { device = 'cuda' })
    local bad = ddpm.tensor({ 1, 7 }, { dtype = ddpm.int64, device = 'cuda' })
    local y = x:index_select(0, bad) -- asynchronous: no error yet
    local ok, err = pcall(function() return y:sum():item() end)
    assert.is_false(ok)
    assert.matches('index_select: index 7 is out of range for a dim of size 5', err)
    -- the error is consumed: later work is fine
    assert.are.equal(15, ddpm.ones(5, 3, { device = 'cuda' }):sum():item())
    -- with DDPM_SYNC the error surfaces at the op itself
    ddpm.cuda.set_sync(true)
    ok, err = pcall(function() return x:index_select(0, bad) end)
    ddpm.cuda.set_sync(false)
    assert.is_false(ok)
    assert.matches('cuda_errors_spec.lua:%d+: index_select: index 7', err)
    local z = ddpm.zeros(5, 3, { device = 'cuda' })
    ok, err = pcall(function()
      z:index_add_(0, ddpm.tensor({ -9 }, { dtype = ddpm.int64, device = 'cuda' }), ddpm.ones(1, 3, { device = 'cuda' }))
      ddpm.cuda.synchronize()
    end)
    assert.is_false(ok)
    assert.matches('index_add', err)
  end)

  it('DDPM_SYNC mode computes the same results', function()
    ddpm.cuda.set_sync(true)
    local ok, r = pcall(function()
      local x = ddpm.randn(100, 50, { device = 'cuda' })
      return (x:matmul(x:t()):relu():sum(1) + 1):mean():item()
    end)
    ddpm.cuda.set_sync(false)
    assert.is_true(ok, r)
    assert.is_true(ddpm.cuda.get_sync() == false)
  end)
end)
