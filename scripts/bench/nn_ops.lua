-- nn_ops.lua: throughput of the nn ops at the reference UNet's shapes (batch 128, 16x16 and 8x8
-- maps): conv2d forward / input-gradient / weight-gradient in GFLOP/s next to a large sgemm
-- (the BLAS ceiling of this machine), and milliseconds for the norm, attention and resampling ops.
-- Usage: ddpm-lua scripts/bench/nn_ops.lua [--batch 128] [--reps 3] [--only conv|norm|attn|misc]
local ddpm = require 'ddpm'
local F = ddpm.nn.functional
local ffi = require 'ffi'
pcall(ffi.cdef, 'typedef struct { long tv_sec; long tv_nsec; } ddpm_bench_ts; int clock_gettime(int, ddpm_bench_ts *);')
local ts = ffi.new('ddpm_bench_ts')
local function now()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local args = { batch = 128, reps = 3 }
local a = { ... }
for i = 1, #a, 2 do args[a[i]:gsub('^%-%-', '')] = tonumber(a[i + 1]) or a[i + 1] end
local B, reps = args.batch, args.reps

-- best of reps (after one warm-up) of fn(), in seconds
local function time(fn)
  fn()
  local best = math.huge
  for _ = 1, reps do
    local t0 = now()
    fn()
    best = math.min(best, now() - t0)
  end
  return best
end

print(string.format('threads %d, batch %d', ddpm.get_num_threads(), B))
do
  local m = ddpm.randn(2048, 2048)
  local t = time(function() return m:matmul(m) end)
  print(string.format('sgemm 2048^3: %.1f GFLOP/s (the ceiling)', 2 * 2048 ^ 3 / t / 1e9))
end

if not args.only or args.only == 'conv' then
  print(string.format('%-34s %9s %9s %9s %9s', 'conv2d', 'fwd', 'bwd in', 'bwd w', 'total ms'))
  local convs = {
    { 'conv_in 3->64 3x3 16x16', 3, 64, 16, 3, 1, 1 },
    { '64->64 3x3 16x16', 64, 64, 16, 3, 1, 1 },
    { '64->64 3x3 s2 16x16 (down)', 64, 64, 16, 3, 2, 1 },
    { '128->128 3x3 16x16 (up)', 128, 128, 16, 3, 1, 1 },
    { '192->64 3x3 16x16', 192, 64, 16, 3, 1, 1 },
    { '128->128 3x3 8x8', 128, 128, 8, 3, 1, 1 },
    { '256->128 3x3 8x8', 256, 128, 8, 3, 1, 1 },
    { '1x1 192->64 16x16', 192, 64, 16, 1, 1, 0 },
    { '1x1 256->128 8x8', 256, 128, 8, 1, 1, 0 },
    { '1x1 128->128 8x8 (proj)', 128, 128, 8, 1, 1, 0 },
    { 'conv_out 64->3 3x3 16x16', 64, 3, 16, 3, 1, 1 },
  }
  for _, c in ipairs(convs) do
    local name, Ci, Co, S, k, s, p = unpack(c)
    local x = ddpm.randn(B, Ci, S, S)
    local w = ddpm.randn(Co, Ci, k, k)
    local b = ddpm.randn(Co)
    local xg, wg = x:clone():requires_grad_(), w:clone():requires_grad_()
    local y = F.conv2d(x, w, b, { stride = s, padding = p })
    local So = y:size(2)
    local flop = 2 * B * Co * So * So * Ci * k * k
    local g = ddpm.randn(y:shape())
    local tf = time(function() return F.conv2d(x, w, b, { stride = s, padding = p }) end)
    -- only the input (then only the weight) requires grad, so each backward runs one kernel
    local ti = time(function()
      xg.grad = nil
      F.conv2d(xg, w, b, { stride = s, padding = p }):backward(g)
    end) - tf
    local tw = time(function()
      wg.grad = nil
      F.conv2d(x, wg, b, { stride = s, padding = p }):backward(g)
    end) - tf
    print(string.format('%-34s %9.1f %9.1f %9.1f %9.1f', name, flop / tf / 1e9, flop / ti / 1e9, flop / tw / 1e9,
      (tf + ti + tw) * 1e3))
  end
  print('(GFLOP/s; bwd columns are measured as forward+backward minus forward)')
end

if not args.only or args.only == 'norm' then
  print(string.format('%-34s %9s %9s', 'normalisation (ms)', 'fwd', 'fwd+bwd'))
  local function bench(name, fn, shape)
    local x = ddpm.randn(shape, { requires_grad = true })
    local g
    local tf = time(function() return fn(x) end)
    local tb = time(function()
      local y = fn(x)
      g = g or ddpm.randn(y:shape())
      y:backward(g)
    end)
    print(string.format('%-34s %9.2f %9.2f', name, tf * 1e3, tb * 1e3))
  end
  local w64, b64 = ddpm.ones(64, { requires_grad = true }), ddpm.zeros(64, { requires_grad = true })
  local w128, b128 = ddpm.ones(128, { requires_grad = true }), ddpm.zeros(128, { requires_grad = true })
  bench('group_norm 64ch 16x16 g32', function(x) return F.group_norm(x, 32, w64, b64) end, { B, 64, 16, 16 })
  bench('group_norm+silu composite', function(x) return F.silu(F.group_norm(x, 32, w64, b64)) end, { B, 64, 16, 16 })
  bench('group_norm_silu fused', function(x) return F.group_norm_silu(x, 32, w64, b64) end, { B, 64, 16, 16 })
  bench('group_norm_silu 128ch 8x8', function(x) return F.group_norm_silu(x, 32, w128, b128) end, { B, 128, 8, 8 })
  bench('layer_norm [B, 64, 128]', function(x) return F.layer_norm(x, 128, w128, b128) end, { B, 64, 128 })
end

if not args.only or args.only == 'attn' then
  print(string.format('%-34s %9s %9s', 'attention (ms)', 'fwd', 'fwd+bwd'))
  local function bench(name, Lq, Lk, H, D)
    local q = ddpm.randn(B, H, Lq, D, { requires_grad = true })
    local k = ddpm.randn(B, H, Lk, D, { requires_grad = true })
    local v = ddpm.randn(B, H, Lk, D, { requires_grad = true })
    local g = ddpm.randn(B, H, Lq, D)
    local tf = time(function() return F.scaled_dot_product_attention(q, k, v) end)
    local tb = time(function() F.scaled_dot_product_attention(q, k, v):backward(g) end)
    print(string.format('%-34s %9.2f %9.2f', name, tf * 1e3, tb * 1e3))
  end
  bench('self-attn 8x8 tokens, 8 heads x 16', 64, 64, 8, 16)
  bench('cross-attn one key, 8 heads x 16', 64, 1, 8, 16)
  bench('self-attn 16x16 tokens, 8 heads x 8', 256, 256, 8, 8)
  local x = ddpm.randn(B, 128, 8, 8, { requires_grad = true })
  local tf = time(function() return F.interpolate(x, { scale_factor = 2 }) end)
  local tb = time(function() F.interpolate(x, { scale_factor = 2 }):sum():backward() end)
  print(string.format('%-34s %9.2f %9.2f', 'interpolate x2 nearest 128ch 8x8', tf * 1e3, tb * 1e3))
  local t = ddpm.randn(B, 3, 16, 16, { requires_grad = true })
  local tt = ddpm.randn(B, 3, 16, 16)
  tf = time(function() return F.mse_loss(t, tt) end)
  tb = time(function() F.mse_loss(t, tt):backward() end)
  print(string.format('%-34s %9.2f %9.2f', 'mse_loss [B, 3, 16, 16]', tf * 1e3, tb * 1e3))
end
