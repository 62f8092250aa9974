-- cuda_graph_spec.lua: CUDA graph capture and replay: replay equals eager execution for pure
-- functions, random draws (fresh numbers each replay, as eager code would draw) and a whole
-- training step; invalid operations during capture fail clearly and leave things usable.
local ddpm = require 'ddpm'
local U = require 'cuda_testutil'
local testing = require 'ddpm.testing'

describe('CUDA graphs', function()
  if not U.gpu() then pending('needs a CUDA GPU: graph capture and replay') return end
  local cuda = ddpm.cuda

  it('replays a captured function over static inputs', function()
    local x = ddpm.randn(64, 32, { device = 'cuda' })
    local w = ddpm.randn(32, 16, { device = 'cuda' })
    local f = function() return (x:matmul(w):sigmoid() * 2 + x:sum(1, true)):sum(0) end
    local g, out = cuda.graph(f)
    assert.are.equal(out, g.outputs[1])
    for _ = 1, 3 do
      x:copy_(ddpm.randn(64, 32))
      g:replay()
      testing.assert_close(out:cpu(), f():cpu(), { rtol = 1e-5, atol = 1e-5 })
    end
  end)

  it('draws fresh random numbers on every replay, as eager code would', function()
    local gen = ddpm.Generator():manual_seed(11)
    local e1 = ddpm.randn(1000, { device = 'cuda', generator = gen })
    local e2 = ddpm.randn(1000, { device = 'cuda', generator = gen })
    local u3 = ddpm.rand(10, { device = 'cuda', generator = gen })
    gen:manual_seed(11)
    local g, r = cuda.graph(function() return ddpm.randn(1000, { device = 'cuda', generator = gen }) end)
    assert.are.equal(0, gen:offset(), 'capture must not consume random numbers')
    g:replay()
    assert.is_true(r:cpu():equal(e1:cpu()))
    g:replay()
    assert.is_true(r:cpu():equal(e2:cpu()))
    assert.are.equal(2000, gen:offset())
    assert.is_true(ddpm.rand(10, { device = 'cuda', generator = gen }):cpu():equal(u3:cpu()))
    -- the default generator too
    ddpm.manual_seed(5)
    local d1 = ddpm.rand(100, { device = 'cuda' }):cpu()
    ddpm.manual_seed(5)
    local g2, r2 = cuda.graph(function() return ddpm.rand(100, { device = 'cuda' }) * 1 end)
    g2:replay()
    assert.is_true(r2:cpu():equal(d1))
  end)

  it('captures a whole training step (forward, backward, SGD update) that matches eager steps', function()
    local function make()
      ddpm.manual_seed(1)
      local W = ddpm.randn(16, 8, { device = 'cuda' }):requires_grad_()
      local b = ddpm.zeros(8, { device = 'cuda' }):requires_grad_()
      return W, b
    end
    local x = ddpm.randn(32, 16, { device = 'cuda' })
    local y = ddpm.randn(32, 8, { device = 'cuda' })
    local function step(W, b)
      if W.grad then W.grad:zero_() b.grad:zero_() end
      local noise = ddpm.randn(32, 8, { device = 'cuda' }) * 0.01
      local loss = ((ddpm.nn.functional.linear(x, W:t(), b):gelu() + noise - y) ^ 2):mean()
      loss:backward()
      ddpm.no_grad(function()
        W:sub_(W.grad * 0.1)
        b:sub_(b.grad * 0.1)
      end)
      return loss
    end
    local W1, b1 = make()
    local W2, b2 = make()
    ddpm.manual_seed(99)
    local eager = {}
    for k = 1, 4 do eager[k] = step(W1, b1):item() end
    ddpm.manual_seed(99)
    local g, loss = cuda.graph(function() return step(W2, b2) end, { warmup = 1 })
    for k = 2, 4 do
      g:replay()
      testing.assert_close(ddpm.tensor(loss:item()), ddpm.tensor(eager[k]), { rtol = 1e-5, atol = 1e-6 })
    end
    testing.assert_close(W2:detach():cpu(), W1:detach():cpu(), { rtol = 1e-5, atol = 1e-6 })
    testing.assert_close(b2:detach():cpu(), b1:detach():cpu(), { rtol = 1e-5, atol = 1e-6 })
  end)

  it('refuses host copies and item() while capturing, and recovers', function()
    local x = ddpm.ones(4, { device = 'cuda' })
    local ok, err = pcall(cuda.graph, function() return x:sum():item() end)
    assert.is_false(ok)
    assert.matches('graph', err)
    assert.is_false(cuda.is_current_stream_capturing())
    ok, err = pcall(cuda.graph, function() return ddpm.tensor({ 1, 2 }, { device = 'cuda' }) end)
    assert.is_false(ok)
    assert.matches('captured in a CUDA graph', err)
    assert.are.equal(4, x:sum():item()) -- eager work is unaffected
  end)

  it('keeps graph memory out of circulation until reset', function()
    collectgarbage()
    local base = cuda.memory_allocated()
    local x = ddpm.randn(256, 256, { device = 'cuda' })
    local g, y = cuda.graph(function() return (x + 1):exp():sum(0) end)
    g:replay()
    local expect = (x + 1):exp():sum(0):cpu()
    local filler = {}
    for k = 1, 20 do filler[k] = ddpm.randn(256, 256, { device = 'cuda' }) end -- would reuse freed blocks
    g:replay()
    testing.assert_close(y:cpu(), expect, { rtol = 1e-5 })
    filler, y = nil, nil
    g:reset()
    g.outputs = {}
    collectgarbage()
    collectgarbage()
    assert.is_true(cuda.memory_allocated() <= base + 256 * 256 * 4 + 2 ^ 20)
  end)

  it('supports the explicit CUDAGraph API', function()
    local a = ddpm.randn(100, { device = 'cuda' })
    local g = cuda.CUDAGraph()
    g:capture_begin()
    local out = a * a
    g:capture_end()
    a:fill_(3)
    g:replay()
    assert.are.equal(900, out:sum():item())
    assert.has_error(function() g:capture_begin() end)
    g:reset()
    assert.has_error(function() g:replay() end)
  end)
end)
