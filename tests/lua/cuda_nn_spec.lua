-- cuda_nn_spec.lua: the CUDA kernels of the nn and optimizer ops against the CPU ones: conv2d
-- (cuDNN), group/layer norm, softmax, attention, interpolate, pad, dropout, losses, nll, one_hot,
-- and the fused Adam/AdamW/SGD/EMA/unscale/total-norm updates, values and gradients, float32 and
-- float64; float16/bfloat16 (which only the GPU runs) against the float32 CPU result.
local ddpm = require 'ddpm'
local U = require 'cuda_testutil'
local testing = require 'ddpm.testing'
local F = ddpm.nn.functional
local nnutils = require 'ddpm.nn.utils'
local compare = U.compare
jit.off() -- see cuda_ops_spec.lua (t + number compiled as pointer arithmetic before the core fix)

local gen = ddpm.Generator():manual_seed(99)
local function randn(...)
  local a = { ... }
  a[#a + 1] = { generator = gen }
  return ddpm.randn(unpack(a))
end
local T32 = { rtol = 1e-4, atol = 1e-4, grad = true }
local T64 = { rtol = 1e-10, atol = 1e-10, grad = true }
local function tol(dt) return dt == 'float64' and T64 or T32 end

-- a GPU-only half-precision run against the float32 CPU computation
local function half_vs_cpu(fn, inputs, dt, t)
  if U.dry then return end -- the CPU has no half-precision nn kernels
  local ci, gi = {}, {}
  for i, x in ipairs(inputs) do
    if ddpm.is_tensor(x) and x:is_floating_point() then
      ci[i] = x
      gi[i] = x:to(U.dev):to(ddpm[dt])
    else
      ci[i], gi[i] = x, ddpm.is_tensor(x) and x:to(U.dev) or x
    end
  end
  local yc, yg = fn(unpack(ci)), fn(unpack(gi))
  assert.are.equal(ddpm[dt], yg.dtype)
  testing.assert_close(yg:float():cpu(), yc, t)
end

describe('CUDA nn kernels match the CPU', function()
  if not U.gpu() then pending('needs a CUDA GPU: nn kernels vs CPU') return end

  for _, dt in ipairs({ 'float32', 'float64' }) do
    it('conv2d ' .. dt .. ' (stride, padding, dilation, groups, bias), with gradients', function()
      local D = ddpm[dt]
      local t = tol(dt)
      compare(function(x, w, b) return F.conv2d(x, w, b, 1, 1) end, { randn(2, 4, 9, 9):to(D), randn(6, 4, 3, 3):to(D), randn(6):to(D) }, t)
      compare(function(x, w) return F.conv2d(x, w, nil, 2, 1) end, { randn(3, 4, 8, 8):to(D), randn(5, 4, 3, 3):to(D) }, t)
      compare(function(x, w, b) return F.conv2d(x, w, b, 1, 0) end, { randn(2, 8, 5, 5):to(D), randn(16, 8, 1, 1):to(D), randn(16):to(D) }, t)
      compare(function(x, w, b) return F.conv2d(x, w, b, { 1, 2 }, { 2, 1 }, { 2, 1 }, 2) end,
        { randn(2, 4, 10, 9):to(D), randn(6, 2, 3, 3):to(D), randn(6):to(D) }, t)
      compare(function(x, w, b) return F.conv2d(x:permute(0, 3, 1, 2), w, b, 1, 1) end,
        { randn(2, 7, 4, 3):to(D), randn(5, 3, 3, 3):to(D), randn(5):to(D) }, t)
    end)
  end

  it('conv2d in float16/bfloat16 (tensor cores) and with cudnn.benchmark', function()
    local x, w, b = randn(2, 8, 16, 16), randn(16, 8, 3, 3), randn(16)
    for _, dt in ipairs({ 'float16', 'bfloat16' }) do
      half_vs_cpu(function(a, c, d) return F.conv2d(a, c, d, 1, 1) end, { x, w, b }, dt, { rtol = 5e-2, atol = 0.25 })
    end
    ddpm.backends.cudnn.benchmark = true
    local ok, err = pcall(compare, function(a, c, d) return F.conv2d(a, c, d, 1, 1) end, { randn(3, 8, 12, 12), randn(8, 8, 3, 3), randn(8) },
      { rtol = 1e-3, atol = 1e-3, grad = true })
    ddpm.backends.cudnn.benchmark = false
    assert.is_true(ok, err)
  end)

  for _, dt in ipairs({ 'float32', 'float64' }) do
    it('group_norm, group_norm_silu and layer_norm ' .. dt .. ', with gradients', function()
      local D = ddpm[dt]
      local t = tol(dt)
      local x = (randn(3, 8, 5, 6) * 2 + 1):to(D)
      compare(function(a, w, b) return F.group_norm(a, 4, w, b, 1e-5) end, { x, randn(8):to(D), randn(8):to(D) }, t)
      compare(function(a, w, b) return F.group_norm_silu(a, 2, w, b, 1e-5) end, { x, randn(8):to(D), randn(8):to(D) }, t)
      compare(function(a) return F.group_norm(a, 8, nil, nil, 1e-6) end, { x }, t)
      compare(function(a, w, b) return F.layer_norm(a, { 6 }, w, b, 1e-5) end, { x, randn(6):to(D), randn(6):to(D) }, t)
      compare(function(a, w, b) return F.layer_norm(a, { 5, 6 }, w, b, 1e-5) end, { x, randn(5, 6):to(D), randn(5, 6):to(D) }, t)
      compare(function(a) return F.layer_norm(a, { 130 }) end, { randn(4, 130):to(D) }, t)
    end)
    it('softmax and log_softmax over every dim ' .. dt .. ', with gradients', function()
      local D = ddpm[dt]
      local x = (randn(4, 5, 70) * 3):to(D)
      for d = 0, 2 do
        compare(function(a) return F.softmax(a, d) end, { x }, tol(dt))
        compare(function(a) return F.log_softmax(a, d) end, { x }, tol(dt))
      end
    end)
    it('scaled_dot_product_attention ' .. dt .. ': plain, masks, causal, one key, split heads, dropout', function()
      local D = ddpm[dt]
      local t = tol(dt)
      local sdpa = F.scaled_dot_product_attention
      local q, k, v = randn(2, 3, 7, 8):to(D), randn(2, 3, 9, 8):to(D), randn(2, 3, 9, 5):to(D)
      compare(function(a, b, c) return sdpa(a, b, c) end, { q, k, v }, t)
      compare(function(a, b, c) return sdpa(a, b, c, { scale = 0.3 }) end, { q, k, v }, t)
      local keep = randn(7, 9):gt(randn(1))
      keep:select(1, 4):fill_(1) -- every query keeps a key (fully masked rows are NaN on both devices)
      compare(function(a, b, c, m) return sdpa(a, b, c, { attn_mask = m }) end, { q, k, v, keep }, t)
      compare(function(a, b, c, m) return sdpa(a, b, c, { attn_mask = m }) end, { q, k, v, randn(1, 3, 7, 9):to(D) }, t)
      compare(function(a, b, c) return sdpa(a, b, c, { is_causal = true }) end, { q, randn(2, 3, 7, 8):to(D), randn(2, 3, 7, 5):to(D) }, t)
      -- one key (cross-attention on one token), with and without a mask
      compare(function(a, b, c) return sdpa(a, b, c) end, { q, randn(2, 3, 1, 8):to(D), randn(2, 3, 1, 5):to(D) }, t)
      -- heads split off a [B, L, H*E] projection: strided views
      compare(function(a, b, c)
        local function heads(x) return x:view(2, x:size(1), 4, 6):transpose(1, 2) end
        return sdpa(heads(a), heads(b), heads(c))
      end, { randn(2, 10, 24):to(D), randn(2, 12, 24):to(D), randn(2, 12, 24):to(D) }, t)
      -- dropout draws the same Philox mask on both devices
      compare(function(a, b, c)
        return sdpa(a, b, c, { dropout_p = 0.3, generator = ddpm.Generator():manual_seed(3) })
      end, { q, k, v }, t)
    end)
  end

  it('attention and norms in float16/bfloat16', function()
    local q, k, v = randn(2, 4, 16, 8), randn(2, 4, 16, 8), randn(2, 4, 16, 8)
    for _, dt in ipairs({ 'float16', 'bfloat16' }) do
      local t = { rtol = 5e-2, atol = 5e-2 }
      half_vs_cpu(function(a, b, c) return F.scaled_dot_product_attention(a, b, c) end, { q, k, v }, dt, t)
      half_vs_cpu(function(a) return F.group_norm_silu(a, 2) end, { randn(2, 4, 6, 6) }, dt, t)
      half_vs_cpu(function(a) return F.layer_norm(a, { 8 }) end, { q }, dt, t)
      half_vs_cpu(function(a) return F.softmax(a, -1) end, { q }, dt, t)
    end
  end)

  for _, dt in ipairs({ 'float32', 'float64' }) do
    it('interpolate (nearest, nearest-exact, linear modes) and pad (every mode) ' .. dt .. ', with gradients', function()
      local D = ddpm[dt]
      local t = tol(dt)
      local x = randn(2, 3, 5, 6):to(D)
      compare(function(a) return F.interpolate(a, { scale_factor = 2 }) end, { x }, t)
      compare(function(a) return F.interpolate(a, { size = { 7, 9 }, mode = 'nearest-exact' }) end, { x }, t)
      compare(function(a) return F.interpolate(a, { size = { 8, 3 }, mode = 'bilinear' }) end, { x }, t)
      compare(function(a) return F.interpolate(a, { scale_factor = 1.5, mode = 'bilinear', align_corners = true }) end, { x }, t)
      compare(function(a) return F.interpolate(a, { size = 11, mode = 'linear' }) end, { randn(2, 3, 4):to(D) }, t)
      compare(function(a) return F.interpolate(a, { size = { 3, 4, 5 }, mode = 'trilinear' }) end, { randn(1, 2, 2, 3, 4):to(D) }, t)
      for _, mode in ipairs({ 'constant', 'reflect', 'replicate', 'circular' }) do
        compare(function(a) return F.pad(a, { 1, 2, 2, 1 }, mode, mode == 'constant' and 0.5 or nil) end, { x }, t)
      end
      compare(function(a) return F.pad(a, { 1, 1 }) end, { ddpm.arange(12):view(3, 4) }, { exact = true })
    end)
    it('dropout, losses, nll_loss, cross_entropy and one_hot ' .. dt .. ', with gradients', function()
      local D = ddpm[dt]
      local t = tol(dt)
      compare(function(a) return F.dropout(a, 0.4, true, { generator = ddpm.Generator():manual_seed(8) }) end, { randn(50, 7):to(D) }, t)
      local x, y = randn(6, 9):to(D), randn(6, 9):to(D)
      for _, red in ipairs({ 'mean', 'sum', 'none' }) do
        compare(function(a, b) return F.mse_loss(a, b, { reduction = red }) end, { x, y }, t)
        compare(function(a, b) return F.l1_loss(a, b, { reduction = red }) end, { x, y }, t)
        compare(function(a, b) return F.smooth_l1_loss(a, b, { reduction = red, beta = 0.5 }) end, { x, y }, t)
      end
      compare(function(a, b) return F.mse_loss(a, b) end, { randn(100000):to(D), randn(100000):to(D) }, t)
      local logits = randn(8, 5, 3):to(D)
      local target = ddpm.randint(0, 5, { 8, 3 }, { generator = gen })
      target:select(0, 2):fill_(-100)
      for _, red in ipairs({ 'mean', 'sum', 'none' }) do
        compare(function(a, tg, w) return F.nll_loss(F.log_softmax(a, 1), tg, { reduction = red, weight = w }) end,
          { logits, target, randn(5):abs():to(D) }, t)
        compare(function(a, tg) return F.cross_entropy(a, tg, { reduction = red }) end, { logits, target }, t)
      end
      compare(function(i) return F.one_hot(i, 7) end, { ddpm.tensor({ 0, 6, 3, 3 }, { dtype = ddpm.int64 }) }, { exact = true })
    end)
  end

  it('reports class indices out of range found on the GPU', function()
    local ok, err = pcall(function() return F.one_hot(ddpm.tensor({ 1, 9 }, { dtype = ddpm.int64, device = U.dev }), 5):sum():item() end)
    assert.is_false(ok)
    assert.matches('one_hot', err)
  end)
end)

describe('CUDA fused optimizer updates match the CPU bit for bit', function()
  if not U.gpu() then pending('needs a CUDA GPU: fused optimizer kernels vs CPU') return end

  local function params(dev, dt)
    local g = ddpm.Generator():manual_seed(5)
    local ps = {}
    for i, shape in ipairs({ { 7 }, { 33, 5 }, { 300, 129 }, { 1 }, { 70000 } }) do
      ps[i] = ddpm.randn(shape, { generator = g, dtype = ddpm[dt] }):to(dev):requires_grad_()
    end
    return ps
  end
  local function grads(ps, step)
    local g = ddpm.Generator():manual_seed(100 + step)
    for _, p in ipairs(ps) do
      p.grad = ddpm.randn(p:shape(), { generator = g, dtype = p.dtype }):to(p.device)
    end
  end
  local function run(make, dev, dt)
    local ps = params(dev, dt)
    local opt = make(ps)
    for step = 1, 4 do
      grads(ps, step)
      opt:step()
    end
    return ps
  end

  for _, dt in ipairs({ 'float32', 'float64' }) do
    for name, make in pairs({
      Adam = function(ps) return ddpm.optim.Adam(ps, { lr = 1e-2 }) end,
      AdamW = function(ps) return ddpm.optim.AdamW(ps, { lr = 1e-2, weight_decay = 0.1, amsgrad = true }) end,
      SGD = function(ps) return ddpm.optim.SGD(ps, { lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 1e-3 }) end,
    }) do
      it(name .. ' ' .. dt, function()
        local a, b = run(make, 'cpu', dt), run(make, U.dev, dt)
        for i = 1, #a do
          assert.is_true(a[i]:detach():equal(b[i]:detach():cpu()), name .. ' parameter ' .. i .. ' differs')
        end
      end)
    end
  end

  it('GradScaler unscale finds inf/NaN, clip_grad_norm_ and EMA', function()
    for _, dev in ipairs({ 'cpu', U.dev }) do
      local ps = params(dev, 'float32')
      grads(ps, 1)
      local n = nnutils.clip_grad_norm_(ps, 1.0)
      assert.is_true(n:item() > 1)
    end
    local pc, pg = params('cpu', 'float32'), params(U.dev, 'float32')
    grads(pc, 2)
    grads(pg, 2)
    local nc, ng = nnutils.clip_grad_norm_(pc, 0.5), nnutils.clip_grad_norm_(pg, 0.5)
    testing.assert_close(ng:cpu(), nc, { rtol = 1e-6, atol = 0 })
    for i = 1, #pc do testing.assert_close(pg[i].grad:cpu(), pc[i].grad, { rtol = 1e-6, atol = 1e-7 }) end
    -- unscale through the C entry point: a NaN anywhere sets found_inf
    local C = ddpm.C
    local found = ddpm.zeros(1, { device = U.dev })
    local arr = ddpm.C and require('ffi').new('ddpm_tensor*[?]', #pg)
    for i = 1, #pg do arr[i - 1] = pg[i].grad end
    assert.are.equal(0, C.ddpm_amp_unscale_(#pg, arr, found, 0.5))
    assert.are.equal(0, found:item())
    pg[3].grad:select(0, 7):select(0, 3):fill_(0 / 0)
    assert.are.equal(0, C.ddpm_amp_unscale_(#pg, arr, found, 0.5))
    assert.are.equal(1, found:item())
    -- EMA
    local ec, eg = ddpm.optim.EMAModel(params('cpu', 'float32')), ddpm.optim.EMAModel(params(U.dev, 'float32'))
    local tc, tg = params('cpu', 'float32'), params(U.dev, 'float32')
    for _, p in ipairs(tc) do ddpm.no_grad(function() p:mul_(0.5) end) end
    for _, p in ipairs(tg) do ddpm.no_grad(function() p:mul_(0.5) end) end
    ec:step(tc)
    eg:step(tg)
    for i = 1, #ec.shadow_params do
      assert.is_true(ec.shadow_params[i]:equal(eg.shadow_params[i]:cpu()), 'EMA shadow ' .. i)
    end
  end)
end)
