-- cpu_bf16_spec.lua: bfloat16 on the CPU (autocast('cpu') as in PyTorch): the bfloat16 GEMM on each
-- of its paths (AMX tiles, AVX512-BF16, portable C; the other paths in child processes through
-- DDPM_CPU_ISA) against float64 on the same bfloat16 values, matmul/bmm/linear and conv2d forward
-- and backward, float32 master gradients under autocast, and the seed UNet under autocast('cpu').
local ddpm = require 'ddpm'
local testing = require 'ddpm.testing'
local F = ddpm.nn.functional
local X = require 'models_fixtures'
local R = require 'host_run'

local S = require 'cpu_bf16_checks'
local near, kernel = S.near, S.kernel

-- cpu_bf16_checks in a child process on the path DDPM_CPU_ISA picks
local CHILD = [[
package.path = %q .. '/?.lua;' .. package.path
local S = require 'cpu_bf16_checks'
assert(S.kernel() == %q, 'path ' .. S.kernel() .. ', expected ' .. %q)
S.gemm_checks()
S.conv_checks()
print('child ok')
]]

describe('bfloat16 on the CPU', function()
  it('names its GEMM path', function()
    assert.is_truthy(({ amx = true, avx512_bf16 = true, generic = true })[kernel()])
  end)

  it('multiplies matrices of any size and layout on this process path', function()
    S.gemm_checks()
  end)

  it('convolves and back-propagates as float64 does on the same values', function()
    S.conv_checks()
  end)

  -- the paths this CPU has besides its default, each in its own process
  local here = debug.getinfo(1, 'S').source:sub(2):match('^(.*)/[^/]*$') or '.'
  local function child_path(isa, name)
    local dir = R.tmpdir()
    R.write(dir .. '/child.lua', string.format(CHILD, here, name, name))
    local r = R.run(R.q(dir .. '/child.lua'), { env = { DDPM_CPU_ISA = isa } })
    R.rmdir(dir)
    assert.are.equal(0, r.status, r.stdout .. r.stderr)
    assert.matches('child ok', r.stdout)
  end
  it('gives the same on the AVX512-BF16 path (DDPM_CPU_ISA=avx512)', function()
    if kernel() == 'generic' then
      pending('this CPU (or DDPM_CPU_ISA) has no AVX512-BF16 path')
      return
    end
    child_path('avx512', 'avx512_bf16')
  end)
  it('gives the same on the portable path (DDPM_CPU_ISA=generic)', function()
    child_path('generic', 'generic')
  end)

  it('sends float32 gradients to float32 master weights under autocast', function()
    ddpm.manual_seed(3)
    local conv = ddpm.nn.Conv2d(8, 16, 3, { padding = 1 })
    local lin = ddpm.nn.Linear(16, 4)
    local x = ddpm.randn(2, 8, 6, 6)
    local y = ddpm.autocast('cpu', { dtype = ddpm.bfloat16 }, function()
      local h = conv(x)
      assert.are.equal(ddpm.bfloat16, h.dtype)
      local o = lin(h:mean({ 2, 3 }))
      assert.are.equal(ddpm.bfloat16, o.dtype)
      return o:float():sum()
    end)
    y:backward()
    assert.are.equal(ddpm.float32, conv.weight.grad.dtype)
    assert.are.equal(ddpm.float32, conv.bias.grad.dtype)
    assert.are.equal(ddpm.float32, lin.weight.grad.dtype)
    -- against the float32 model
    local c2, l2 = ddpm.nn.Conv2d(8, 16, 3, { padding = 1 }), ddpm.nn.Linear(16, 4)
    c2:load_state_dict(conv:state_dict())
    l2:load_state_dict(lin:state_dict())
    l2(c2(x):mean({ 2, 3 })):sum():backward()
    testing.assert_close(conv.weight.grad, c2.weight.grad, { rtol = 3e-2, atol = 3e-2 })
    testing.assert_close(lin.weight.grad, l2.weight.grad, { rtol = 3e-2, atol = 3e-2 })
    -- float16 autocast on the CPU keeps conv2d in float32 (no float16 CPU kernels)
    local yh = ddpm.autocast('cpu', { dtype = ddpm.float16 }, function() return conv(x) end)
    assert.are.equal(ddpm.float32, yh.dtype)
  end)

  -- out = unet(sample) under autocast('cpu', bfloat16) against float32, then a backward
  local function unet_check(unet)
    unet:eval()
    local io_ = X.load(X.fixtures .. '/seed/io.safetensors')
    local sample, target = io_.sample:narrow(0, 0, 2), io_.target:narrow(0, 0, 2)
    ddpm.manual_seed(5)
    local ts, ehs = io_.timesteps:narrow(0, 0, 2), ddpm.randn(2, 1, 64)
    local ref = ddpm.no_grad(function() return unet(sample, ts, ehs).sample end)
    local loss = ddpm.autocast('cpu', { dtype = ddpm.bfloat16 }, function()
      local out = unet(sample, ts, ehs).sample
      assert.are.equal(ddpm.bfloat16, out.dtype)
      near(out:float(), ref:double(), 5e-2, 'UNet output under autocast')
      return F.mse_loss(out, target)
    end)
    assert.are.equal(ddpm.float32, loss.dtype)
    loss:backward()
    for _, name in ipairs({ 'conv_in.weight', 'conv_out.weight', 'time_embedding.linear_1.weight' }) do
      local w = unet:get_parameter(name)
      assert.are.equal(ddpm.float32, w.grad.dtype, name)
      assert.is_true(w.grad:abs():sum():item() > 0, name)
      assert.is_true(w.grad:isfinite():all(), name)
    end
  end

  local have = X.have(X.fixtures .. '/seed/io.safetensors')
  it('runs the seed UNet (attention-free blocks) under autocast close to float32', function()
    if not have then
      pending('fixtures not found under ' .. X.fixtures .. ' (set DDPM_SHARED)')
      return
    end
    local cfg = X.read_json(X.fixtures .. '/seed/unet/config.json')
    cfg.down_block_types = { 'DownBlock2D', 'DownBlock2D' }
    cfg.up_block_types = { 'UpBlock2D', 'UpBlock2D' }
    cfg.mid_block_type = 'UNetMidBlock2D'
    ddpm.manual_seed(0)
    unet_check(ddpm.models.UNet2DConditionModel(cfg))
  end)

  it('runs the seed UNet forward and backward under autocast close to float32', function()
    if not have then
      pending('fixtures not found under ' .. X.fixtures .. ' (set DDPM_SHARED)')
      return
    end
    local unet = ddpm.models.UNet2DConditionModel.from_config(X.fixtures .. '/seed/unet/config.json')
    unet:load_state_dict((X.hash_state_dicts('seed')))
    local ok, err = pcall(unet_check, unet)
    if not ok and tostring(err):match('scaled_dot_product_attention: bfloat16 is not supported') then
      pending('needs bfloat16 attention on the CPU (' .. tostring(err):match('[^\n]*') .. ')')
      return
    end
    assert(ok, err)
  end)
end)
