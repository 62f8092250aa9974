-- bf16_ops.lua: milliseconds per call of the non-GEMM ops of the UNet on bfloat16 tensors against
-- float32 (casts, add/mul, SiLU/GELU, group_norm(+SiLU), layer_norm, attention, sums), at the
-- batch-128 activation sizes; the two dtypes alternate and each figure is a median of 7 repeats.
--   ddpm-lua scripts/bench/bf16_ops.lua [--threads N] [--reps 7]
-- DDPM_CPU_ISA=generic times the portable (non-AVX-512) conversions.
package.path = (arg[0]:match('^(.*)/[^/]*$') or '.') .. '/?.lua;' .. package.path
local B = require 'common'
local ddpm = B.ddpm
local F = ddpm.nn.functional
local usage = 'usage: ddpm-lua bf16_ops.lua [--threads N] [--reps 7]'
local o = B.parse({ reps = 7 }, arg, usage)
B.setup(o)

local x = ddpm.randn(128, 128, 8, 8)    -- a 128-channel 8x8 activation at batch 128
local xl = ddpm.randn(128, 64, 128)     -- the transformer's [B, HW, C] tokens
local q = ddpm.randn(128, 8, 64, 16)    -- 8 heads of 16
local k1 = ddpm.randn(128, 8, 1, 16)    -- one-key cross-attention
local w = ddpm.randn(128)
local function as(dt)
  local c = function(t) return dt == 'bf16' and t:bfloat16() or t end
  return { x = c(x), xl = c(xl), q = c(q), k1 = c(k1), heads = c(ddpm.randn(128, 64, 128)):view(128, 64, 8, 16):permute(0, 2, 1, 3) }
end
local T = { f32 = as('f32'), bf16 = as('bf16') }
local cases = {
  { 'cast from float32', function(t, dt) return dt == 'bf16' and x:bfloat16() or x:clone() end },
  { 'cast to float32', function(t, dt) return dt == 'bf16' and t.x:float() or t.x:clone() end },
  { 'copy of a head view (contiguous)', function(t) return t.heads:contiguous() end },
  { 'add', function(t) return t.x + t.x end },
  { 'mul', function(t) return t.x * t.x end },
  { 'silu', function(t) return F.silu(t.x) end },
  { 'gelu', function(t) return F.gelu(t.x) end },
  { 'sum over the batch (bias gradient)', function(t) return t.x:view(128, -1):sum(0) end },
  { 'group_norm + SiLU (float32 weights)', function(t) return F.group_norm_silu(t.x, 32, w, w) end },
  { 'layer_norm (float32 weights)', function(t) return F.layer_norm(t.xl, { 128 }, w, w) end },
  { 'scaled_dot_product_attention, 64 keys', function(t) return F.scaled_dot_product_attention(t.q, t.q, t.q) end },
  { 'scaled_dot_product_attention, 1 key', function(t) return F.scaled_dot_product_attention(t.q, t.k1, t.k1) end },
}
local function time_of(f, t, dt)
  local t0 = B.now()
  for _ = 1, 10 do f(t, dt) end
  return (B.now() - t0) / 10
end
print(string.format('| op (batch-128 sizes) | float32 ms | bfloat16 ms | bf16/f32 |'))
print('|---|---:|---:|---:|')
local rows = {}
for _, c in ipairs(cases) do
  local name, f = c[1], c[2]
  f(T.f32, 'f32'); f(T.bf16, 'bf16')
  local a, b = {}, {}
  for r = 1, o.reps do
    a[r] = time_of(f, T.f32, 'f32')
    b[r] = time_of(f, T.bf16, 'bf16')
  end
  local ma, mb = B.median(a), B.median(b)
  print(string.format('| %s | %.3f | %.3f | %.2f |', name, ma * 1e3, mb * 1e3, mb / ma))
end
