-- cuda_memory_spec.lua: the caching allocator seen from Lua (statistics, reuse, empty_cache, the
-- out-of-memory retry under an artificial limit), pinned host memory, streams and events.
local ddpm = require 'ddpm'
local U = require 'cuda_testutil'
local testing = require 'ddpm.testing'
local MiB = 2 ^ 20

local function settle()
  collectgarbage()
  collectgarbage()
end

describe('CUDA caching allocator', function()
  if not U.gpu() then pending('needs a CUDA GPU: caching allocator statistics and OOM retry') return end
  local cuda = ddpm.cuda

  it('counts allocated, reserved and peak bytes and reuses freed blocks', function()
    settle()
    local base = cuda.memory_allocated()
    local t = ddpm.empty(MiB, { device = 'cuda' }) -- 4 MiB
    assert.are.equal(base + 4 * MiB, cuda.memory_allocated())
    assert.is_true(cuda.memory_reserved() >= cuda.memory_allocated())
    assert.is_true(cuda.max_memory_allocated() >= base + 4 * MiB)
    local mallocs = cuda.memory_stats().device_mallocs
    t:free()
    assert.are.equal(base, cuda.memory_allocated())
    local t2 = ddpm.empty(MiB, { device = 'cuda' })
    assert.are.equal(mallocs, cuda.memory_stats().device_mallocs, 'the freed block was not reused')
    t2:free()
    cuda.reset_peak_memory_stats()
    assert.are.equal(cuda.memory_allocated(), cuda.max_memory_allocated())
    cuda.empty_cache()
    assert.is_true(cuda.memory_reserved() <= cuda.memory_allocated() + 20 * MiB)
  end)

  it('survives a stress of many sizes, frees and reuse with intact data', function()
    settle()
    local base = cuda.memory_allocated()
    local g = ddpm.Generator():manual_seed(3)
    local live = {}
    for step = 1, 400 do
      local n = math.floor(ddpm.rand(1, { generator = g }):item() ^ 3 * 3e6) + 1
      local v = step % 17
      live[#live + 1] = { t = ddpm.full({ n }, v, { device = 'cuda', dtype = ddpm.int32 }), n = n, v = v }
      if #live > 12 then
        local k = (step * 7) % #live + 1
        local e = table.remove(live, k)
        assert.are.equal(e.n * e.v, e.t:sum():item(), 'data of a live block was overwritten')
        e.t:free()
      end
    end
    for _, e in ipairs(live) do
      assert.are.equal(e.n * e.v, e.t:sum():item())
      e.t:free()
    end
    live = nil
    settle() -- the sums above are GPU tensors too
    assert.are.equal(base, cuda.memory_allocated())
  end)

  it('releases the cache and retries once when the limit is reached, then reports OOM clearly', function()
    settle()
    cuda.empty_cache()
    local base = cuda.memory_reserved()
    local flushes = cuda.memory_stats().cache_flushes
    cuda.set_memory_limit(base + 64 * MiB)
    local ok, err = pcall(function()
      local a = ddpm.empty(10 * MiB, { device = 'cuda' }) -- 40 MiB segment
      a:free()                                            -- cached, still reserved
      local b = ddpm.empty(12 * MiB, { device = 'cuda' }) -- 48 MiB: only fits after the cache is released
      assert.is_true(cuda.memory_stats().cache_flushes > flushes, 'the cache was not released')
      b:free()
      return ddpm.empty(40 * MiB, { device = 'cuda' }) -- 160 MiB: above the limit
    end)
    cuda.set_memory_limit(0)
    assert.is_false(ok)
    assert.matches('CUDA out of memory: tried to allocate 160%.00 MiB on cuda:0', err)
    assert.matches('limit', err)
    -- the process and the allocator carry on
    assert.are.equal(6, ddpm.full({ 3 }, 2, { device = 'cuda' }):sum():item())
    assert.is_true(cuda.memory_stats().num_ooms >= 1)
  end)

  it('reports a real device OOM with requested and free sizes, and recovers', function()
    local ok, err = pcall(function() return ddpm.empty(2 ^ 42, { device = 'cuda' }) end) -- 16 TiB
    assert.is_false(ok)
    assert.matches('CUDA out of memory: tried to allocate', err)
    assert.matches('MiB free', err)
    assert.matches('cuda_memory_spec.lua', err) -- raised at the caller's line
    assert.are.equal(3, ddpm.ones(3, { device = 'cuda' }):sum():item())
  end)
end)

describe('pinned host memory', function()
  if not U.gpu() then pending('needs a CUDA GPU: page-locked host memory') return end

  it('pin_memory copies into page-locked memory and moves to the GPU unchanged', function()
    local t = ddpm.randn(1000, 33)
    local p = t:pin_memory()
    assert.is_true(p:is_pinned())
    assert.is_false(t:is_pinned())
    assert.is_true(ddpm.cuda.is_pinned(p))
    assert.is_true(p:equal(t))
    assert.is_true(p:cuda():cpu():equal(t))
    assert.are.equal(p, p:pin_memory()) -- already pinned: itself
    local nc = t:t():pin_memory()
    assert.is_true(nc:is_contiguous() and nc:equal(t:t()))
    -- buffers are cached and reused
    for _ = 1, 20 do ddpm.zeros(4096):pin_memory():free() end
    local ok, err = pcall(function() return ddpm.ones(3, { device = 'cuda' }):pin_memory() end)
    assert.is_false(ok)
    assert.matches('not a CPU tensor', err)
  end)
end)

describe('CUDA streams and events', function()
  if not U.gpu() then pending('needs a CUDA GPU: streams and events') return end
  local cuda = ddpm.cuda

  it('runs work on a side stream and orders it with wait_stream', function()
    local s = cuda.Stream()
    local x = ddpm.randn(512, 512, { device = 'cuda' })
    local expect = (x:matmul(x) + 1):sum():item()
    local y
    s:wait_stream(cuda.current_stream())
    cuda.stream(s, function()
      assert.are.equal(s, cuda.current_stream())
      y = x:matmul(x) + 1
      y:record_stream(s)
    end)
    assert.are_not.equal(s, cuda.current_stream())
    cuda.current_stream():wait_stream(s)
    testing.assert_close(ddpm.tensor(y:sum():item()), ddpm.tensor(expect), { rtol = 1e-4 })
    s:synchronize()
    assert.is_true(s:query())
  end)

  it('restores the stream when the function raises', function()
    local s = cuda.Stream({ priority = -1 })
    local before = cuda.current_stream()
    assert.has_error(function() cuda.stream(s, function() error('boom') end) end)
    assert.are.equal(before, cuda.current_stream())
  end)

  it('times work with events', function()
    local a, b = cuda.Event({ enable_timing = true }), cuda.Event({ enable_timing = true })
    a:record()
    local x = ddpm.randn(1024, 1024, { device = 'cuda' })
    for _ = 1, 5 do x = x:matmul(x):tanh() end
    b:record()
    b:synchronize()
    assert.is_true(b:query())
    assert.is_true(a:elapsed_time(b) >= 0)
    local ok, err = pcall(function() return cuda.Event():elapsed_time(cuda.Event()) end)
    assert.is_false(ok)
    assert.matches('enable_timing', err)
  end)

  it('answers device queries', function()
    assert.is_true(cuda.device_count() >= 1)
    assert.are.equal(0, cuda.current_device())
    assert.is_string(cuda.get_device_name(0))
    local major = cuda.get_device_capability()
    assert.is_true(major >= 5)
    local p = cuda.get_device_properties(0)
    assert.is_true(p.total_memory > 0 and p.multi_processor_count > 0)
    local free, total = cuda.mem_get_info()
    assert.is_true(free > 0 and total >= free)
    cuda.synchronize()
    cuda.set_device(0)
    local ok, err = pcall(cuda.set_device, 99)
    assert.is_false(ok)
    assert.matches('invalid device index 99', err)
  end)
end)
