-- cpu_bf16_checks.lua: the bfloat16 CPU checks of cpu_bf16_spec.lua (GEMM sizes and layouts, conv2d
-- forward/backward against float64 on the same bfloat16 values), a module so that the spec can run
-- them again in child processes on other paths (DDPM_CPU_ISA).  Failures raise with the case named.
local ddpm = require 'ddpm'
local ffi = require 'ffi'
local F = ddpm.nn.functional

local M = {}

function M.kernel() return ddpm.backends.cpu.bf16_kernel() end

-- |a - r| <= tol * max|r| elementwise, r the float64 reference
function M.near(a, r, tol, what)
  local err = (a:double() - r):abs():max():item()
  local scale = math.max(r:abs():max():item(), 1e-30)
  assert(err <= tol * scale, string.format('%s: max |diff| %.3g of max %.3g (rel %.3g > %.3g)', what, err,
    scale, err / scale, tol))
end

-- bfloat16 operands of [M, K] and [K, N], each stored as is or transposed
local function operands(M, K, N, ta, tb)
  local a = ta and ddpm.randn(K, M):bfloat16():t() or ddpm.randn(M, K):bfloat16()
  local b = tb and ddpm.randn(N, K):bfloat16():t() or ddpm.randn(K, N):bfloat16()
  return a, b
end

-- sizes off every multiple of 16/32, K = 1, K above one 1152-deep block, tall and wide
local SIZES = { { 1, 1, 1 }, { 7, 1, 5 }, { 33, 17, 45 }, { 100, 300, 70 }, { 64, 1200, 130 }, { 5, 2500, 3 },
  { 300, 64, 600 }, { 2, 2, 17 } }

-- runs every GEMM check on the current process's path; errors name the case
function M.gemm_checks()
  ddpm.manual_seed(7)
  for _, s in ipairs(SIZES) do
    for _, t in ipairs({ { false, false }, { true, false }, { false, true }, { true, true } }) do
      local a, b = operands(s[1], s[2], s[3], t[1], t[2])
      local o = ddpm.matmul(a, b)
      assert(o.dtype == ddpm.bfloat16, 'matmul result dtype')
      -- a float32 sum rounded once to bfloat16: within 2^-8 of the largest output
      M.near(o, ddpm.matmul(a:double(), b:double()), 2 ^ -8, string.format('matmul %dx%dx%d trans %s %s', s[1], s[2],
        s[3], tostring(t[1]), tostring(t[2])))
    end
  end
  -- batched, a broadcast batch, and a batch of non-contiguous slices
  local a, b = ddpm.randn(6, 17, 33):bfloat16(), ddpm.randn(6, 33, 9):bfloat16()
  M.near(ddpm.bmm(a, b), ddpm.bmm(a:double(), b:double()), 2 ^ -8, 'bmm')
  local bb = ddpm.randn(1, 33, 40):bfloat16():expand(6, 33, 40)
  M.near(ddpm.bmm(a, bb), ddpm.bmm(a:double(), bb:double()), 2 ^ -8, 'bmm broadcast')
  local big = ddpm.randn(3, 70, 90):bfloat16()
  local sa, sb = big:narrow(1, 3, 40):narrow(2, 5, 50), big:narrow(1, 1, 50):narrow(2, 7, 30):transpose(1, 2)
  M.near(ddpm.matmul(sa, sb:transpose(1, 2)), ddpm.matmul(sa:double(), sb:transpose(1, 2):double()), 2 ^ -8, 'slices')
  -- linear with and without bias; the bias joins the float32 sum before the one rounding
  for _, s in ipairs({ { 37, 29, 19 }, { 200, 64, 512 }, { 3, 5, 64 } }) do
    local x, w, bias = ddpm.randn(s[1], s[2]):bfloat16(), ddpm.randn(s[3], s[2]):bfloat16(), ddpm.randn(s[3]):bfloat16()
    M.near(F.linear(x, w, bias), F.linear(x:double(), w:double(), bias:double()), 2 ^ -8, 'linear ' .. s[1])
    M.near(F.linear(x, w), F.linear(x:double(), w:double()), 2 ^ -8, 'linear no bias ' .. s[1])
  end
  -- an exact case: small integers have exact products and sums
  local ia = ddpm.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }):bfloat16()
  local ib = ddpm.tensor({ { 1, 0 }, { 0, 1 }, { 2, -1 } }):bfloat16()
  assert(ddpm.matmul(ia, ib):float():equal(ddpm.tensor({ { 7, -1 }, { 16, -1 } })), 'exact integer product')
  -- K = 0: zeros (plus bias)
  local z = ddpm.matmul(ddpm.zeros(3, 0):bfloat16(), ddpm.zeros(0, 4):bfloat16())
  assert(z:float():equal(ddpm.zeros(3, 4)), 'K = 0 gives zeros')
end

-- conv2d forward, input and weight gradients against float64 on the same bfloat16 values
local function conv_case(N, C, Hh, W, O, k, stride, pad, groups)
  groups = groups or 1
  local x = ddpm.randn(N, C, Hh, W):bfloat16():requires_grad_()
  local w = (ddpm.randn(O, C / groups, k, k) * 0.1):bfloat16():requires_grad_()
  local b = ddpm.randn(O):bfloat16():requires_grad_()
  local opts = { stride = stride, padding = pad, groups = groups }
  local y = F.conv2d(x, w, b, opts)
  assert(y.dtype == ddpm.bfloat16, 'conv2d result dtype')
  local g = ddpm.randn(y:shape()):bfloat16()
  y:backward(g)
  local xd, wd, bd = x:detach():double():requires_grad_(), w:detach():double():requires_grad_(),
      b:detach():double():requires_grad_()
  local yd = F.conv2d(xd, wd, bd, opts)
  yd:backward(g:double())
  local what = string.format('conv %dx%dx%dx%d -> %d k%d s%d p%d g%d', N, C, Hh, W, O, k, stride, pad, groups)
  assert(x.grad.dtype == ddpm.bfloat16 and w.grad.dtype == ddpm.bfloat16, 'conv2d gradient dtypes')
  M.near(y, yd, 1e-2, what .. ' forward')
  M.near(x.grad, xd.grad, 1e-2, what .. ' input grad')
  M.near(w.grad, wd.grad, 1e-2, what .. ' weight grad')
  M.near(b.grad, bd.grad, 1e-2, what .. ' bias grad')
end

function M.conv_checks()
  ddpm.manual_seed(11)
  conv_case(2, 64, 16, 16, 64, 3, 1, 1)   -- the UNet's 3x3 "same" convolutions
  conv_case(3, 64, 16, 16, 128, 3, 2, 1)  -- its stride-2 downsample
  conv_case(2, 128, 8, 8, 64, 1, 1, 0)    -- its 1x1 shortcut
  conv_case(4, 5, 7, 9, 3, 3, 1, 1)       -- odd everything
  conv_case(1, 3, 16, 16, 64, 3, 1, 1)    -- conv_in, one image
  conv_case(2, 8, 9, 11, 6, 3, 2, 1, 2)   -- groups, stride 2, odd sizes
  conv_case(5, 130, 5, 5, 70, 1, 1, 0)
  conv_case(1, 4, 36, 36, 8, 3, 1, 1)     -- 1296 output pixels: the weight gradient sums two K blocks
end

return M
