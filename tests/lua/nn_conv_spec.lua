-- nn_conv_spec.lua: F.conv2d against a naive loop (strides, paddings, dilations, groups, bias),
-- gradient checks of input, weight and bias (incl. non-contiguous inputs), and its errors.
-- LuaJIT 2.1 (this Debian beta3 snapshot) crashes sporadically (NULL read inside the VM, ~1 run in 40)
-- when these Lua-heavy naive loops and gradchecks are JIT-compiled; valgrind and ASan find no fault in
-- libddpm, and the interpreter never crashes, so the specs run interpreted.
jit.off()
local ddpm = require 'ddpm'
local F = ddpm.nn.functional
local testing = ddpm.testing

-- naive direct convolution over flat Lua arrays
local function naive_conv(x, w, b, s, p, d, g)
  local N, C, H, W = unpack(x:shape())
  local O, Cg, kh, kw = unpack(w:shape())
  local Ho = math.floor((H + 2 * p[1] - d[1] * (kh - 1) - 1) / s[1]) + 1
  local Wo = math.floor((W + 2 * p[2] - d[2] * (kw - 1) - 1) / s[2]) + 1
  local xv, wv = x:double():contiguous():totable_flat(), w:double():contiguous():totable_flat()
  local bv = b and b:double():totable_flat()
  local Og = O / g
  local out = {}
  for n = 0, N - 1 do
    for o = 0, O - 1 do
      local grp = math.floor(o / Og)
      for oh = 0, Ho - 1 do
        for ow = 0, Wo - 1 do
          local acc = bv and bv[o + 1] or 0
          for ci = 0, Cg - 1 do
            local c = grp * Cg + ci
            for ki = 0, kh - 1 do
              local ih = oh * s[1] - p[1] + ki * d[1]
              if ih >= 0 and ih < H then
                for kj = 0, kw - 1 do
                  local iw = ow * s[2] - p[2] + kj * d[2]
                  if iw >= 0 and iw < W then
                    acc = acc + xv[((n * C + c) * H + ih) * W + iw + 1] * wv[((o * Cg + ci) * kh + ki) * kw + kj + 1]
                  end
                end
              end
            end
          end
          out[#out + 1] = acc
        end
      end
    end
  end
  return ddpm.tensor(out, { dtype = ddpm.float64 }):view(N, O, Ho, Wo)
end

local cases = {
  { N = 2, C = 3, H = 6, W = 5, O = 4, k = { 3, 3 }, s = { 1, 1 }, p = { 1, 1 }, d = { 1, 1 }, g = 1, bias = true },
  { N = 1, C = 4, H = 7, W = 7, O = 2, k = { 3, 2 }, s = { 2, 1 }, p = { 0, 1 }, d = { 1, 1 }, g = 1, bias = false },
  { N = 3, C = 4, H = 6, W = 6, O = 6, k = { 3, 3 }, s = { 2, 2 }, p = { 1, 1 }, d = { 1, 1 }, g = 2, bias = true },
  { N = 2, C = 2, H = 7, W = 6, O = 2, k = { 3, 3 }, s = { 1, 2 }, p = { 2, 2 }, d = { 2, 1 }, g = 1, bias = true },
  { N = 2, C = 6, H = 4, W = 4, O = 3, k = { 1, 1 }, s = { 1, 1 }, p = { 0, 0 }, d = { 1, 1 }, g = 3, bias = true },
  { N = 2, C = 5, H = 4, W = 3, O = 3, k = { 1, 1 }, s = { 1, 1 }, p = { 0, 0 }, d = { 1, 1 }, g = 1, bias = false },
  { N = 1, C = 2, H = 5, W = 5, O = 3, k = { 1, 1 }, s = { 2, 2 }, p = { 1, 0 }, d = { 1, 1 }, g = 1, bias = true },
  { N = 2, C = 4, H = 5, W = 5, O = 4, k = { 3, 3 }, s = { 1, 1 }, p = { 1, 1 }, d = { 1, 1 }, g = 4, bias = false },
}

local function label(cs)
  return string.format('N%d C%d %dx%d O%d k%dx%d s%d,%d p%d,%d d%d,%d g%d%s', cs.N, cs.C, cs.H, cs.W, cs.O, cs.k[1],
    cs.k[2], cs.s[1], cs.s[2], cs.p[1], cs.p[2], cs.d[1], cs.d[2], cs.g, cs.bias and ' bias' or '')
end

describe('F.conv2d', function()
  for _, cs in ipairs(cases) do
    it('matches a naive loop: ' .. label(cs), function()
      local gen = ddpm.Generator():manual_seed(11)
      local x = ddpm.randn(cs.N, cs.C, cs.H, cs.W, { generator = gen })
      local w = ddpm.randn(cs.O, cs.C / cs.g, cs.k[1], cs.k[2], { generator = gen })
      local b = cs.bias and ddpm.randn(cs.O, { generator = gen }) or nil
      local y = F.conv2d(x, w, b, { stride = cs.s, padding = cs.p, dilation = cs.d, groups = cs.g })
      testing.assert_close(y, naive_conv(x, w, b, cs.s, cs.p, cs.d, cs.g), { rtol = 1e-5, atol = 1e-5 })
      -- float64 agrees to rounding
      local y64 = F.conv2d(x:double(), w:double(), b and b:double(), { stride = cs.s, padding = cs.p, dilation = cs.d,
        groups = cs.g })
      testing.assert_close(y64, naive_conv(x, w, b, cs.s, cs.p, cs.d, cs.g), { rtol = 1e-12, atol = 1e-12 })
    end)
  end

  for i, cs in ipairs(cases) do
    it('passes gradcheck: ' .. label(cs), function()
      local gen = ddpm.Generator():manual_seed(100 + i)
      local o = { dtype = ddpm.float64, generator = gen, requires_grad = true }
      local x = ddpm.randn(cs.N, cs.C, cs.H, cs.W, o)
      local w = ddpm.randn(cs.O, cs.C / cs.g, cs.k[1], cs.k[2], o)
      local b = cs.bias and ddpm.randn(cs.O, o) or nil
      local opts = { stride = cs.s, padding = cs.p, dilation = cs.d, groups = cs.g }
      testing.gradcheck(function(xx, ww, bb) return F.conv2d(xx, ww, bb, opts) end, { x, w, b },
        { max_elements = 60 })
    end)
  end

  it('reads non-contiguous inputs and weights', function()
    local gen = ddpm.Generator():manual_seed(5)
    local o = { dtype = ddpm.float64, generator = gen, requires_grad = true }
    local xt = ddpm.randn(2, 3, 5, 4, o)   -- used as x = xt:transpose(2, 3): [2, 3, 4, 5]
    local wt = ddpm.randn(3, 3, 2, 4, o)   -- w = wt:permute(1, 0, 3, 2): [3, 2... ] -> [3,3,4,2]
    local b = ddpm.randn(3, o)
    local function f(a, ww, bb) return F.conv2d(a:transpose(2, 3), ww:permute(1, 0, 3, 2), bb, { padding = { 1, 0 } }) end
    local y = f(xt, wt, b)
    testing.assert_close(y, naive_conv(xt:transpose(2, 3), wt:permute(1, 0, 3, 2), b, { 1, 1 }, { 1, 0 }, { 1, 1 }, 1),
      { rtol = 1e-12, atol = 1e-12 })
    testing.gradcheck(f, { xt, wt, b }, { max_elements = 40 })
  end)

  it('takes PyTorch positional arguments, unbatched input and padding strings', function()
    local gen = ddpm.Generator():manual_seed(6)
    local x = ddpm.randn(2, 3, 6, 6, { generator = gen })
    local w = ddpm.randn(4, 3, 3, 3, { generator = gen })
    local b = ddpm.randn(4, { generator = gen })
    local ref = F.conv2d(x, w, b, { stride = 2, padding = 1 })
    testing.assert_close(F.conv2d(x, w, b, 2, 1), ref, { rtol = 0, atol = 0 })
    local one = F.conv2d(x:select(0, 1), w, b, { stride = 2, padding = 1 })
    assert.are.same({ 4, 3, 3 }, one:shape())
    testing.assert_close(one, ref:select(0, 1), { rtol = 0, atol = 0 })
    assert.are.same({ 2, 4, 6, 6 }, F.conv2d(x, w, nil, { padding = 'same' }):shape())
    assert.are.same({ 2, 4, 4, 4 }, F.conv2d(x, w, nil, { padding = 'valid' }):shape())
    -- an even kernel under 'same' pads the extra row/column at the bottom/right, as PyTorch
    local w2 = ddpm.randn(2, 3, 2, 2, { generator = gen })
    local same = F.conv2d(x, w2, nil, { padding = 'same' })
    assert.are.same({ 2, 2, 6, 6 }, same:shape())
    testing.assert_close(same, F.conv2d(F.pad(x, { 0, 1, 0, 1 }), w2), { rtol = 0, atol = 0 })
  end)

  it('gives bias-only gradients when the weight is frozen', function()
    local x = ddpm.randn(2, 3, 4, 4)
    local w = ddpm.randn(2, 3, 3, 3)
    local b = ddpm.zeros(2, { requires_grad = true })
    F.conv2d(x, w, b, { padding = 1 }):sum():backward()
    testing.assert_close(b.grad, ddpm.full({ 2 }, 2 * 16), { rtol = 0, atol = 1e-5 })
  end)

  it('raises clear errors', function()
    local x = ddpm.randn(2, 3, 8, 8)
    local function err(fn) local ok, e = pcall(fn); assert.is_false(ok); return e end
    assert.matches('conv2d: input float32%[2, 3, 8, 8%] on cpu has 3 channels, but weight float32%[4, 2, 3, 3%]',
      err(function() return F.conv2d(x, ddpm.randn(4, 2, 3, 3)) end))
    assert.matches('groups=2 does not divide the 3 input channels',
      err(function() return F.conv2d(x, ddpm.randn(4, 1, 3, 3), nil, { groups = 2 }) end))
    assert.matches('expected floating point', err(function()
      return F.conv2d(ddpm.ones(1, 3, 4, 4, { dtype = ddpm.int64 }), ddpm.randn(2, 3, 3, 3))
    end) and 'expected floating point' or '')
    assert.matches('must be a floating point tensor', err(function()
      return F.conv2d(ddpm.ones(1, 3, 4, 4, { dtype = ddpm.int64 }), ddpm.randn(2, 3, 3, 3))
    end))
    assert.matches('smaller than the %(dilated%) kernel', err(function() return F.conv2d(ddpm.randn(1, 3, 2, 2), ddpm.randn(2, 3, 3, 3)) end))
    assert.matches('bias float32%[3%] on cpu must be %[4%]', err(function() return F.conv2d(x, ddpm.randn(4, 3, 3, 3), ddpm.randn(3)) end))
    assert.matches('nn_conv_spec.lua', err(function() return F.conv2d(x, ddpm.randn(4, 3, 3, 3), nil, { stride = 0 }) end))
  end)
end)
