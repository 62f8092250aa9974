-- autocast_cpu_bf16_spec.lua: bfloat16 on the CPU: the autocast('cpu') cast policy per op, attention,
-- elementwise/activation/reduction ops on bf16 tensors against float64 references, and the
-- vectorised float32 <-> bfloat16 conversion (bit for bit the rounding of the portable path).
local ddpm = require 'ddpm'
local ffi = require 'ffi'
local bit = require 'bit'
local H = require 'host_run'
local testing = ddpm.testing
local F = ddpm.nn.functional

local function bf16_round(t) return t:bfloat16():double() end
local function bf(t) return t:bfloat16() end
local function close(a, e, tol)
  testing.assert_close(a:double(), e:double(), { rtol = tol or 1e-2, atol = tol or 1e-2 })
end
local function bf16_autocast(fn, ...) return ddpm.autocast('cpu', { dtype = ddpm.bfloat16 }, fn, ...) end

describe("autocast('cpu', bfloat16) policy", function()
  it('is reachable as ddpm.amp.autocast, as torch.autocast is torch.amp.autocast', function()
    assert.are.equal(ddpm.autocast, ddpm.amp.autocast)
  end)

  it('lowers linear, matmul, bmm and scaled_dot_product_attention to bfloat16', function()
    local x, w, b = ddpm.randn(4, 8), ddpm.randn(5, 8), ddpm.randn(5)
    local q = ddpm.randn(2, 3, 6, 8)
    bf16_autocast(function()
      assert.are.equal(ddpm.bfloat16, F.linear(x, w, b).dtype)
      assert.are.equal(ddpm.bfloat16, x:matmul(w:t()).dtype)
      assert.are.equal(ddpm.bfloat16, ddpm.bmm(q:view(6, 6, 8), q:view(6, 6, 8):transpose(1, 2)).dtype)
      assert.are.equal(ddpm.bfloat16, F.scaled_dot_product_attention(q, q, q).dtype)
      -- float64 is not eligible, as in PyTorch
      assert.are.equal(ddpm.float64, F.linear(x:double(), w:double()).dtype)
    end)
  end)

  it('runs losses and sum/mean in float32', function()
    local xb = ddpm.randn(2, 8, 4, 4):bfloat16()
    bf16_autocast(function()
      assert.are.equal(ddpm.float32, F.mse_loss(xb, xb:float()).dtype)
      assert.are.equal(ddpm.float32, F.l1_loss(xb, xb:float()).dtype)
      assert.are.equal(ddpm.float32, xb:sum().dtype)
      assert.are.equal(ddpm.float32, xb:mean().dtype)
    end)
  end)

  it('leaves group_norm, layer_norm and softmax to the input dtype, as PyTorch on the CPU', function()
    local x = ddpm.randn(2, 8, 4, 4)
    local xb, w = x:bfloat16(), ddpm.randn(8)
    bf16_autocast(function()
      assert.are.equal(ddpm.bfloat16, F.group_norm(xb, 2, w, w).dtype)
      assert.are.equal(ddpm.bfloat16, F.group_norm_silu(xb, 2, w, w).dtype)
      assert.are.equal(ddpm.bfloat16, F.layer_norm(xb, { 4 }).dtype)
      assert.are.equal(ddpm.bfloat16, F.softmax(xb, -1).dtype)
      assert.are.equal(ddpm.float32, F.group_norm(x, 2, w, w).dtype)
      assert.are.equal(ddpm.float32, F.layer_norm(x, { 4 }).dtype)
      assert.are.equal(ddpm.float32, F.softmax(x, -1).dtype)
    end)
  end)

  it('lowers conv2d once the CPU has a bfloat16 convolution', function()
    local x, w = ddpm.randn(1, 2, 5, 5), ddpm.randn(3, 2, 3, 3)
    local native = pcall(F.conv2d, x:bfloat16(), w:bfloat16())
    local y = bf16_autocast(function() return F.conv2d(x, w, nil, 1, 1) end)
    -- without a bf16 kernel conv2d stays float32 (the branch that adds the kernel switches the policy)
    assert.are.equal(native and ddpm.bfloat16 or ddpm.float32, y.dtype)
  end)

  it('leaves elementwise ops to type promotion: bf16 with float32 gives float32', function()
    local a, b = ddpm.randn(3):bfloat16(), ddpm.randn(3)
    bf16_autocast(function()
      assert.are.equal(ddpm.float32, (a + b).dtype)
      assert.are.equal(ddpm.float32, (b * a).dtype)
      assert.are.equal(ddpm.bfloat16, (a + a).dtype)
      assert.are.equal(ddpm.bfloat16, F.silu(a).dtype)
    end)
  end)

  it('sends float32 gradients to float32 master weights through the lowered ops', function()
    local w = ddpm.randn(6, 8):requires_grad_()
    local x = ddpm.randn(3, 8)
    local loss = bf16_autocast(function()
      local y = F.linear(x, w)
      local q = y:view(1, 1, 3, 6)
      return F.mse_loss(F.scaled_dot_product_attention(q, q, q), ddpm.zeros(1, 1, 3, 6))
    end)
    assert.are.equal(ddpm.float32, loss.dtype)
    loss:backward()
    assert.are.equal(ddpm.float32, w.grad.dtype)
    assert.is_true(w.grad:abs():sum():item() > 0)
  end)
end)

describe('scaled_dot_product_attention on bfloat16 CPU tensors', function()
  local function check(B, H_, Lq, Lk, E, opts)
    ddpm.manual_seed(7)
    local q64, k64, v64 = ddpm.randn(B, H_, Lq, E, { dtype = ddpm.float64 }), ddpm.randn(B, H_, Lk, E, { dtype = ddpm.float64 }),
      ddpm.randn(B, H_, Lk, E, { dtype = ddpm.float64 })
    q64, k64, v64 = bf16_round(q64), bf16_round(k64), bf16_round(v64)
    local go = bf16_round(ddpm.randn(B, H_, Lq, E, { dtype = ddpm.float64 }))
    local rq, rk, rv = q64:clone():requires_grad_(), k64:clone():requires_grad_(), v64:clone():requires_grad_()
    local ref = F.scaled_dot_product_attention(rq, rk, rv, nil, 0, opts and opts.causal)
    ref:backward(go)
    local q, k, v = bf(q64):requires_grad_(), bf(k64):requires_grad_(), bf(v64):requires_grad_()
    local o = F.scaled_dot_product_attention(q, k, v, nil, 0, opts and opts.causal)
    assert.are.equal(ddpm.bfloat16, o.dtype)
    close(o, ref)
    o:backward(bf(go))
    for _, p in ipairs({ { q, rq }, { k, rk }, { v, rv } }) do
      assert.are.equal(ddpm.bfloat16, p[1].grad.dtype)
      close(p[1].grad, p[2].grad, 2e-2)
    end
  end
  it('matches float64 on bf16-rounded inputs, forward and backward (UNet self-attention shape)', function()
    check(2, 8, 64, 64, 16)
  end)
  it('matches float64 for one-key cross-attention and causal masks', function()
    check(3, 8, 64, 1, 16)
    check(2, 2, 7, 7, 5, { causal = true })
  end)
  it('takes bool and float masks and dropout like float32', function()
    ddpm.manual_seed(12)
    local q64 = bf16_round(ddpm.randn(2, 3, 6, 8, { dtype = ddpm.float64 }))
    local k64 = bf16_round(ddpm.randn(2, 3, 5, 8, { dtype = ddpm.float64 }))
    local bmask = ddpm.rand(6, 5):gt(0.3)
    local fmask = ddpm.randn(2, 1, 6, 5)
    for _, m in ipairs({ bmask, fmask }) do
      local o = F.scaled_dot_product_attention(bf(q64), bf(k64), bf(k64), m)
      close(o, F.scaled_dot_product_attention(q64, k64, k64, m.dtype == ddpm.bool and m or m:double()))
    end
    local function drop(t) return F.scaled_dot_product_attention(t(q64), t(k64), t(k64),
      { dropout_p = 0.3, generator = ddpm.Generator():manual_seed(5) }) end
    close(drop(bf), drop(function(t) return t:float() end))
  end)

  it('reads strided head views of a [B, L, H*D] projection', function()
    local x = ddpm.randn(2, 16, 32)
    local hv = function(t) return t:view(2, 16, 4, 8):permute(0, 2, 1, 3) end
    local o = F.scaled_dot_product_attention(hv(bf(x)), hv(bf(x)), hv(bf(x)))
    local x64 = bf16_round(x)
    close(o, F.scaled_dot_product_attention(hv(x64), hv(x64), hv(x64)))
  end)
end)

describe('bfloat16 elementwise, activation, norm and reduction ops on the CPU', function()
  it('add/mul/sub/div match float64 on rounded inputs (contiguous, broadcast, strided)', function()
    ddpm.manual_seed(3)
    local a64, b64 = bf16_round(ddpm.randn(33, 70, { dtype = ddpm.float64 })), bf16_round(ddpm.randn(70, { dtype = ddpm.float64 }))
    local a, b = bf(a64), bf(b64)
    close(a + a, a64 + a64, 1e-2)
    close(a * b, a64 * b64, 1e-2)
    close(a - b, a64 - b64, 1e-2)
    close(a / (b:abs() + 1), a64 / (b64:abs() + 1), 1e-2)
    close(a:t() * 2, a64:t() * 2, 1e-2)
    close(a:t():contiguous() + a:t(), a64:t() + a64:t(), 1e-2)
  end)

  it('silu and gelu, forward and backward, match float64', function()
    ddpm.manual_seed(4)
    local x64 = bf16_round(ddpm.randn(1000, { dtype = ddpm.float64 }) * 3)
    local g64 = bf16_round(ddpm.randn(1000, { dtype = ddpm.float64 }))
    for _, name in ipairs({ 'silu', 'gelu' }) do
      local xr = x64:clone():requires_grad_()
      local yr = F[name](xr)
      yr:backward(g64)
      local x = bf(x64):requires_grad_()
      local y = F[name](x)
      assert.are.equal(ddpm.bfloat16, y.dtype)
      close(y, yr:detach(), 1e-2)
      y:backward(bf(g64))
      assert.are.equal(ddpm.bfloat16, x.grad.dtype)
      close(x.grad, xr.grad, 2e-2)
    end
  end)

  it('group_norm and layer_norm of bf16 activations under autocast match float64', function()
    ddpm.manual_seed(5)
    local x64 = bf16_round(ddpm.randn(2, 8, 4, 4, { dtype = ddpm.float64 }))
    local x = bf(x64):requires_grad_()
    local gn, ln = bf16_autocast(function() return F.group_norm(x, 4), F.layer_norm(x, { 4 }) end)
    close(gn, F.group_norm(x64, 4))
    close(ln, F.layer_norm(x64, { 4 }))
    ;(gn:float():sum() + ln:float():sum()):backward()
    assert.are.equal(ddpm.bfloat16, x.grad.dtype)
  end)

  it('group_norm(+SiLU), layer_norm and softmax take bf16 tensors (float32 weights allowed) and return bf16', function()
    ddpm.manual_seed(8)
    local x64 = bf16_round(ddpm.randn(2, 8, 4, 4, { dtype = ddpm.float64 }))
    local w64, b64 = bf16_round(ddpm.randn(8, { dtype = ddpm.float64 })), bf16_round(ddpm.randn(8, { dtype = ddpm.float64 }))
    local x = bf(x64):requires_grad_()
    local w = w64:float():requires_grad_()
    local y = F.group_norm(x, 4, w, bf(b64))
    assert.are.equal(ddpm.bfloat16, y.dtype)
    close(y, F.group_norm(x64, 4, w64, b64))
    close(F.silu(F.group_norm(bf(x64), 2)), F.silu(F.group_norm(x64, 2)))
    local gs = ddpm.nn.GroupNorm(4, 8)
    close(gs(bf(x64)), gs:double()(x64):detach())
    close(F.layer_norm(bf(x64), { 4 }, bf(w64:narrow(0, 0, 4))), F.layer_norm(x64, { 4 }, w64:narrow(0, 0, 4)))
    close(F.softmax(bf(x64), -1), F.softmax(x64, -1))
    close(F.log_softmax(bf(x64), 1), F.log_softmax(x64, 1), 3e-2)
    y:float():sum():backward()
    assert.are.equal(ddpm.bfloat16, x.grad.dtype)
    assert.are.equal(ddpm.float32, w.grad.dtype)
  end)

  it('group_norm(+SiLU) on bf16 reads and writes bf16 natively: values and gradients match float64', function()
    ddpm.manual_seed(9)
    for _, fused in ipairs({ false, true }) do
      local x64 = bf16_round(ddpm.randn(3, 8, 5, 7, { dtype = ddpm.float64 }))   -- odd spatial size: masked tails
      local w64, b64 = bf16_round(ddpm.randn(8, { dtype = ddpm.float64 })), bf16_round(ddpm.randn(8, { dtype = ddpm.float64 }))
      local g64 = bf16_round(ddpm.randn(3, 8, 5, 7, { dtype = ddpm.float64 }))
      local fn = fused and F.group_norm_silu or F.group_norm
      local xr, wr, br = x64:clone():requires_grad_(), w64:clone():requires_grad_(), b64:clone():requires_grad_()
      fn(xr, 4, wr, br):backward(g64)
      local x, w, b = bf(x64):requires_grad_(), w64:float():requires_grad_(), b64:float():requires_grad_()
      local y = fn(x, 4, w, b)
      assert.are.equal(ddpm.bfloat16, y.dtype)
      close(y, fn(x64, 4, w64, b64))
      y:backward(bf(g64))
      assert.are.equal(ddpm.bfloat16, x.grad.dtype)
      assert.are.equal(ddpm.float32, w.grad.dtype)
      close(x.grad, xr.grad, 2e-2)
      testing.assert_close(w.grad:double(), wr.grad, { rtol = 1e-4, atol = 1e-4 })
      testing.assert_close(b.grad:double(), br.grad, { rtol = 1e-4, atol = 1e-4 })
    end
  end)

  it('group_norm(+SiLU) on bf16 is the float32 result rounded once, with or without autocast', function()
    ddpm.manual_seed(10)
    for _, fused in ipairs({ false, true }) do
      local fn = fused and F.group_norm_silu or F.group_norm
      local x0 = ddpm.randn(2, 16, 6, 5):bfloat16()
      local w0, b0 = ddpm.randn(16), ddpm.randn(16)
      local g = ddpm.randn(2, 16, 6, 5):bfloat16()
      local x1, w1, b1 = x0:clone():requires_grad_(), w0:clone():requires_grad_(), b0:clone():requires_grad_()
      local y1 = bf16_autocast(function() return fn(x1, 4, w1, b1) end)
      assert.are.equal(ddpm.bfloat16, y1.dtype)
      y1:backward(g)
      local x2, w2, b2 = x0:float():requires_grad_(), w0:clone():requires_grad_(), b0:clone():requires_grad_()
      local y2 = fn(x2, 4, w2, b2)
      y2:backward(g:float())
      assert.are.equal(0, (y1:float() - y2:detach():bfloat16():float()):abs():max():item())
      assert.are.equal(ddpm.bfloat16, x1.grad.dtype)
      assert.are.equal(0, (x1.grad:float() - x2.grad:bfloat16():float()):abs():max():item())
      assert.are.equal(0, (w1.grad - w2.grad):abs():max():item())
      assert.are.equal(0, (b1.grad - b2.grad):abs():max():item())
    end
  end)

  it('layer_norm on bf16 (float32 weights): values and gradients match float64, rows in several blocks', function()
    ddpm.manual_seed(13)
    for _, D in ipairs({ 128, 37, 5000 }) do
      local rows = D == 5000 and 3 or 75
      local x64 = bf16_round(ddpm.randn(rows, D, { dtype = ddpm.float64 }))
      local w64, b64 = bf16_round(ddpm.randn(D, { dtype = ddpm.float64 })), bf16_round(ddpm.randn(D, { dtype = ddpm.float64 }))
      local g64 = bf16_round(ddpm.randn(rows, D, { dtype = ddpm.float64 }))
      local xr, wr, br = x64:clone():requires_grad_(), w64:clone():requires_grad_(), b64:clone():requires_grad_()
      F.layer_norm(xr, { D }, wr, br):backward(g64)
      local x, w, b = bf(x64):requires_grad_(), w64:float():requires_grad_(), b64:float():requires_grad_()
      local y = F.layer_norm(x, { D }, w, b)
      assert.are.equal(ddpm.bfloat16, y.dtype)
      close(y, F.layer_norm(x64, { D }, w64, b64), 3e-2)
      y:backward(bf(g64))
      assert.are.equal(ddpm.bfloat16, x.grad.dtype)
      close(x.grad, xr.grad, 3e-2)
      testing.assert_close(w.grad:double(), wr.grad, { rtol = 1e-4, atol = 1e-3 })
      testing.assert_close(b.grad:double(), br.grad, { rtol = 1e-4, atol = 1e-3 })
    end
  end)

  it('sums (all, rows, bias-gradient columns) match float64 on rounded inputs', function()
    ddpm.manual_seed(6)
    local x64 = bf16_round(ddpm.randn(300, 40, { dtype = ddpm.float64 }))
    local x = bf(x64)
    close(x:sum(), x64:sum(), 1e-2)
    close(x:sum(0), x64:sum(0), 1e-2)
    close(x:sum(1), x64:sum(1), 1e-2)
    close(x:t():sum(0), x64:t():sum(0), 1e-2)
  end)
end)

-- the rounding every float32 -> bfloat16 conversion must give (ddpm_f32_to_bf16): round to
-- nearest even; a NaN keeps its top bits with the quiet bit set
local function ref_bf16(u)
  if bit.band(u, 0x7fffffff) > 0x7f800000 then
    return bit.band(bit.bor(bit.rshift(u, 16), 0x40), 0xffff)
  end
  local lsb = bit.band(bit.rshift(u, 16), 1)
  return bit.band(bit.rshift(bit.tobit(u + 0x7fff + lsb), 16), 0xffff)
end

local CONVERT = [[
local ffi, bit = require 'ffi', require 'bit'
local special = { 0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x00007fff, 0x00008000, 0x00018000, 0x007fffff,
  0x00800000, 0x3f808000, 0x3f818000, 0x3f808001, 0x3f80ffff, 0xbf818000, 0x7f7fffff, 0xff7fffff, 0x7f7f8000,
  0x7f800000, 0xff800000, 0x7f800001, 0x7fbfffff, 0x7fc00000, 0xffc00001, 0xffffffff, 0x7fffffff, 0x3f800000 }
local n = 40009 -- odd: the vector loop's masked tail runs
local x = ddpm.empty(n)
local p = ffi.cast('uint32_t *', x:data_ptr())
local s = 12345
for i = 0, n - 1 do
  local sp = special[i % 97 + 1]
  if sp then p[i] = sp else s = (s * 1103515245 + 12345) % 2147483648; p[i] = (s * 2 + i) % 4294967296 end
end
local b = x:bfloat16()
local q = ffi.cast('uint16_t *', b:data_ptr())
local out = {}
for i = 0, n - 1 do out[#out + 1] = string.format('%08x %04x', p[i], q[i]) end
-- strided (scalar) conversion of the same values, and every bf16 pattern back to float32
local h = ddpm.empty(65536, { dtype = ddpm.bfloat16 })
local hp = ffi.cast('uint16_t *', h:data_ptr())
for i = 0, 65535 do hp[i] = i end
local f = h:float()
local fp = ffi.cast('uint32_t *', f:data_ptr())
local bad = 0
for i = 0, 65535 do if fp[i] ~= i * 65536 then bad = bad + 1 end end
out[#out + 1] = 'widen_bad ' .. bad
-- elementwise results on bf16, written as exact float32 words
ddpm.manual_seed(11)
local a = ddpm.randn(4099):bfloat16()
local c = ddpm.randn(4099):bfloat16()
local F = ddpm.nn.functional
local gx = ddpm.randn(2, 16, 9, 9):bfloat16():requires_grad_()
local gw = ddpm.randn(16):requires_grad_()
local gy = F.group_norm_silu(gx, 4, gw, gw)
gy:backward(gy:detach())
for _, y in ipairs({ a + c, a * c, F.silu(a), F.gelu(a), a:sum(0, true), gy, gx.grad }) do
  local yf = y:float()
  local yp = ffi.cast('uint32_t *', yf:data_ptr())
  local words = {}
  for i = 0, yf:numel() - 1 do words[#words + 1] = string.format('%08x', yp[i]) end
  out[#out + 1] = table.concat(words, ' ')
end
local fh = io.open(arg[1], 'w')
fh:write(table.concat(out, '\n'), '\n')
fh:close()
]]

describe('float32 <-> bfloat16 conversion', function()
  local dir, fast, generic
  setup(function()
    dir = H.tmpdir()
    local script = dir .. '/convert.lua'
    H.write(script, CONVERT)
    local a = H.run(H.q(script) .. ' ' .. H.q(dir .. '/fast.txt'))
    local b = H.run(H.q(script) .. ' ' .. H.q(dir .. '/generic.txt'), { env = { DDPM_CPU_ISA = 'generic' } })
    assert.are.equal(0, a.status, a.stderr)
    assert.are.equal(0, b.status, b.stderr)
    fast, generic = {}, {}
    for l in io.lines(dir .. '/fast.txt') do fast[#fast + 1] = l end
    for l in io.lines(dir .. '/generic.txt') do generic[#generic + 1] = l end
    H.rmdir(dir)
  end)

  it('rounds to nearest even, keeps NaN quiet, handles infinities and denormals (both paths)', function()
    for _, lines in ipairs({ fast, generic }) do
      local checked = 0
      for i = 1, 40009 do
        local u, h = lines[i]:match('^(%x+) (%x+)$')
        u, h = tonumber(u, 16), tonumber(h, 16)
        local want = ref_bf16(bit.tobit(u))
        if want ~= h then error(string.format('bf16(0x%08x) = 0x%04x, expected 0x%04x', u, h, want)) end
        checked = checked + 1
      end
      assert.are.equal(40009, checked)
      assert.are.equal('widen_bad 0', lines[40010])
    end
  end)

  it('gives the same elementwise, activation and sum results with DDPM_CPU_ISA=generic', function()
    assert.are.equal(#fast, #generic)
    -- conversions, add, mul and sum are bit for bit; SiLU/GELU and group_norm+SiLU (AVX-512 vs libm
    -- in float32) within one bf16 ulp
    for i = 1, 40010 do assert.are.equal(fast[i], generic[i]) end
    for k, exact in ipairs({ true, true, false, false, true, false, false }) do
      local lf, lg = fast[40010 + k], generic[40010 + k]
      if exact then
        assert.is_true(lf == lg, 'result ' .. k .. ' differs between the paths')
      else
        local wf, wg = {}, {}
        for w in lf:gmatch('%x+') do wf[#wf + 1] = tonumber(w, 16) end
        for w in lg:gmatch('%x+') do wg[#wg + 1] = tonumber(w, 16) end
        assert.are.equal(#wf, #wg)
        for j = 1, #wf do
          assert.is_true(math.abs(wf[j] - wg[j]) <= 65536, 'activation ' .. k .. ' element ' .. j)
        end
      end
    end
  end)
end)

describe("the reference UNet under autocast('cpu', bfloat16)", function()
  local cfg = { sample_size = 16, in_channels = 3, out_channels = 3, layers_per_block = 2, block_out_channels = { 64, 128 },
    down_block_types = { 'DownBlock2D', 'CrossAttnDownBlock2D' }, up_block_types = { 'CrossAttnUpBlock2D', 'UpBlock2D' },
    encoder_hid_dim = 64, cross_attention_dim = 64 }
  local function gen(s) return { generator = ddpm.Generator():manual_seed(s) } end

  it('trains with float32 master weights: loss and gradients close to float32', function()
    local m = ddpm.models.UNet2DConditionModel(cfg, gen(0))
    local x, ehs = ddpm.randn(2, 3, 16, 16, gen(1)), ddpm.randn(2, 1, 64, gen(2))
    local t, noise = ddpm.randint(0, 200, { 2 }, gen(3)), ddpm.randn(2, 3, 16, 16, gen(4))
    local ref = F.mse_loss(m(x, t, ehs).sample, noise)
    ref:backward()
    local g32 = {}
    for i, p in ipairs(m:parameters()) do g32[i] = p.grad:clone() end
    m:zero_grad()
    local loss = bf16_autocast(function() return F.mse_loss(m(x, t, ehs).sample, noise) end)
    assert.are.equal(ddpm.float32, loss.dtype)
    assert.is_true(math.abs(loss:item() - ref:item()) < 0.02 * ref:item(), loss:item() .. ' vs ' .. ref:item())
    loss:backward()
    local dot, n1, n2 = 0, 0, 0
    for i, p in ipairs(m:parameters()) do
      assert.are.equal(ddpm.float32, p.grad.dtype)
      dot = dot + (p.grad * g32[i]):sum():item()
      n1, n2 = n1 + (p.grad * p.grad):sum():item(), n2 + (g32[i] * g32[i]):sum():item()
    end
    local cos = dot / math.sqrt(n1 * n2)
    assert.is_true(cos > 0.99, 'cosine of the bf16 and float32 gradients: ' .. cos)
    ddpm.optim.Adam(m:parameters(), { lr = 1e-4 }):step()
  end)
end)
