-- nn_resample_spec.lua: F.interpolate (nearest, nearest-exact, bilinear) and F.pad (constant,
-- reflect, replicate, circular) against naive index maps, gradient checks and errors.
-- LuaJIT 2.1 (this Debian beta3 snapshot) crashes sporadically (NULL read inside the VM, ~1 run in 40)
-- when these Lua-heavy naive loops and gradchecks are JIT-compiled; valgrind and ASan find no fault in
-- libddpm, and the interpreter never crashes, so the specs run interpreted.
jit.off()
local ddpm = require 'ddpm'
local F = ddpm.nn.functional
local testing = ddpm.testing

-- [N, C, H, W] -> [N, C, Ho, Wo] with per-dim source maps (0-based), nearest
local function naive_gather2d(x, Ho, Wo, hmap, wmap)
  local N, C, H, W = unpack(x:shape())
  local v = x:double():contiguous():totable_flat()
  local out = {}
  for p = 0, N * C - 1 do
    for i = 0, Ho - 1 do
      for j = 0, Wo - 1 do
        out[#out + 1] = v[(p * H + hmap(i)) * W + wmap(j) + 1]
      end
    end
  end
  return ddpm.tensor(out, { dtype = ddpm.float64 }):view(N, C, Ho, Wo)
end

-- PyTorch's bilinear (align_corners false): src = (dst + 0.5) * in/out - 0.5 clamped at 0
local function naive_bilinear(x, Ho, Wo, align)
  local N, C, H, W = unpack(x:shape())
  local v = x:double():contiguous():totable_flat()
  local function src(o, n_in, n_out)
    local s
    if align then s = n_out > 1 and o * (n_in - 1) / (n_out - 1) or 0
    else s = math.max((o + 0.5) * n_in / n_out - 0.5, 0) end
    local i0 = math.min(math.floor(s), n_in - 1)
    local i1 = math.min(i0 + 1, n_in - 1)
    return i0, i1, s - i0
  end
  local out = {}
  for p = 0, N * C - 1 do
    for i = 0, Ho - 1 do
      local h0, h1, lh = src(i, H, Ho)
      for j = 0, Wo - 1 do
        local w0, w1, lw = src(j, W, Wo)
        local function at(a, b) return v[(p * H + a) * W + b + 1] end
        out[#out + 1] = (1 - lh) * ((1 - lw) * at(h0, w0) + lw * at(h0, w1)) + lh * ((1 - lw) * at(h1, w0) + lw * at(h1, w1))
      end
    end
  end
  return ddpm.tensor(out, { dtype = ddpm.float64 }):view(N, C, Ho, Wo)
end

describe('F.interpolate', function()
  local x = ddpm.randn(2, 3, 4, 5, { generator = ddpm.Generator():manual_seed(1) })

  it('nearest x2 repeats each pixel 2x2 and matches the index map', function()
    local y = F.interpolate(x, { scale_factor = 2, mode = 'nearest' })
    assert.are.same({ 2, 3, 8, 10 }, y:shape())
    testing.assert_close(y, naive_gather2d(x, 8, 10, function(i) return math.floor(i / 2) end,
      function(j) return math.floor(j / 2) end), { rtol = 0, atol = 0 })
    testing.assert_close(F.interpolate(x, { size = { 8, 10 } }), y, { rtol = 0, atol = 0 })
  end)

  it('nearest to arbitrary sizes and scale factors, nearest-exact', function()
    local y = F.interpolate(x, { size = { 7, 3 } })
    testing.assert_close(y, naive_gather2d(x, 7, 3, function(i) return math.min(math.floor(i * 4 / 7), 3) end,
      function(j) return math.min(math.floor(j * 5 / 3), 4) end), { rtol = 0, atol = 0 })
    local z = F.interpolate(x, { scale_factor = 1.5 })
    assert.are.same({ 2, 3, 6, 7 }, z:shape())
    testing.assert_close(z, naive_gather2d(x, 6, 7, function(i) return math.min(math.floor(i / 1.5), 3) end,
      function(j) return math.min(math.floor(j / 1.5), 4) end), { rtol = 0, atol = 0 })
    local e = F.interpolate(x, { size = { 7, 3 }, mode = 'nearest-exact' })
    testing.assert_close(e, naive_gather2d(x, 7, 3, function(i) return math.min(math.floor((i + 0.5) * 4 / 7), 3) end,
      function(j) return math.min(math.floor((j + 0.5) * 5 / 3), 4) end), { rtol = 0, atol = 0 })
    -- 1-D and 3-D inputs
    local x1 = ddpm.arange(4):float():view(1, 1, 4)
    assert.are.same({ 0, 0, 1, 1, 2, 2, 3, 3 }, F.interpolate(x1, { scale_factor = 2 }):view(-1):totable_flat())
    local x3 = ddpm.randn(1, 2, 2, 2, 2)
    local y3 = F.interpolate(x3, { scale_factor = 2 })
    testing.assert_close(y3:select(2, 3):select(2, 1):select(2, 2), x3:select(2, 1):select(2, 0):select(2, 1), { rtol = 0, atol = 0 })
  end)

  it('bilinear matches PyTorch formula, with and without align_corners', function()
    testing.assert_close(F.interpolate(x, { size = { 7, 9 }, mode = 'bilinear' }), naive_bilinear(x, 7, 9, false),
      { rtol = 1e-5, atol = 1e-5 })
    testing.assert_close(F.interpolate(x, { scale_factor = 2, mode = 'bilinear', align_corners = true }),
      naive_bilinear(x, 8, 10, true), { rtol = 1e-5, atol = 1e-5 })
    testing.assert_close(F.interpolate(x, { size = { 3, 2 }, mode = 'bilinear' }), naive_bilinear(x, 3, 2, false),
      { rtol = 1e-5, atol = 1e-5 })
  end)

  it('passes gradcheck (nearest, bilinear, non-contiguous)', function()
    local o = { dtype = ddpm.float64, requires_grad = true, generator = ddpm.Generator():manual_seed(2) }
    local xd = ddpm.randn(2, 2, 3, 4, o)
    testing.gradcheck(function(t) return F.interpolate(t, { scale_factor = 2 }) end, { xd })
    testing.gradcheck(function(t) return F.interpolate(t, { size = { 5, 3 } }) end, { xd })
    testing.gradcheck(function(t) return F.interpolate(t, { size = { 5, 7 }, mode = 'bilinear' }) end, { xd })
    testing.gradcheck(function(t) return F.interpolate(t, { size = { 2, 6 }, mode = 'bilinear', align_corners = true }) end, { xd })
    testing.gradcheck(function(t) return F.interpolate(t:transpose(2, 3), { scale_factor = 2 }) end, { xd })
    testing.gradcheck(function(t) return F.interpolate(t:view(2, 2, 12), { size = 17, mode = 'linear' }) end, { xd })
  end)

  it('raises clear errors', function()
    local function err(fn) local ok, e = pcall(fn); assert.is_false(ok); return e end
    assert.matches("mode 'bicubic' is not supported", err(function() return F.interpolate(x, { scale_factor = 2, mode = 'bicubic' }) end))
    assert.matches('bilinear mode needs 4D input', err(function() return F.interpolate(ddpm.randn(1, 2, 3), { size = 4, mode = 'bilinear' }) end))
    assert.matches('align_corners option can only be set', err(function() return F.interpolate(x, { scale_factor = 2, align_corners = false }) end))
    assert.matches('exactly one of size or scale_factor', err(function() return F.interpolate(x, {}) end))
    assert.matches('must be a floating point', err(function() return F.interpolate(ddpm.ones(1, 1, 2, 2, { dtype = ddpm.int64 }), { scale_factor = 2 }) end))
  end)
end)

-- source index of output position o along a dim of size n padded by (a, b)
local function pad_src(o, a, n, mode)
  local s = o - a
  if mode == 'reflect' then
    if s < 0 then s = -s end
    if s >= n then s = 2 * (n - 1) - s end
  elseif mode == 'replicate' then
    s = math.max(0, math.min(n - 1, s))
  elseif mode == 'circular' then
    s = s % n
  elseif s < 0 or s >= n then
    return nil
  end
  return s
end

local function naive_pad2d(x, p, mode, value)
  local N, C, H, W = unpack(x:shape())
  local v = x:double():contiguous():totable_flat()
  local Ho, Wo = H + p[3] + p[4], W + p[1] + p[2]
  local out = {}
  for q = 0, N * C - 1 do
    for i = 0, Ho - 1 do
      for j = 0, Wo - 1 do
        local si, sj = pad_src(i, p[3], H, mode), pad_src(j, p[1], W, mode)
        out[#out + 1] = (si and sj) and v[(q * H + si) * W + sj + 1] or (value or 0)
      end
    end
  end
  return ddpm.tensor(out, { dtype = ddpm.float64 }):view(N, C, Ho, Wo)
end

describe('F.pad', function()
  local x = ddpm.randn(2, 2, 4, 5, { generator = ddpm.Generator():manual_seed(3) })
  for _, mode in ipairs({ 'constant', 'reflect', 'replicate', 'circular' }) do
    it(mode .. ' matches a naive index map and passes gradcheck', function()
      for _, p in ipairs({ { 1, 2, 3, 0 }, { 0, 0, 1, 1 }, { 2, 1, 0, 3 } }) do
        local value = mode == 'constant' and 1.5 or nil
        testing.assert_close(F.pad(x, p, mode, value), naive_pad2d(x, p, mode, value), { rtol = 0, atol = 0 })
        testing.assert_close(F.pad(x, p, { mode = mode, value = value }), naive_pad2d(x, p, mode, value), { rtol = 0, atol = 0 })
      end
      local xd = ddpm.randn(2, 1, 4, 5, { dtype = ddpm.float64, requires_grad = true })
      testing.gradcheck(function(t) return F.pad(t, { 2, 1, 3, 1 }, mode) end, { xd })
      testing.gradcheck(function(t) return F.pad(t:transpose(2, 3), { 1, 2 }, mode) end, { xd })
    end)
  end

  it('crops with negative constant padding, pads 1 or 3 dims, pads integers', function()
    testing.assert_close(F.pad(x, { -1, -2, 0, -1 }), x:narrow(3, 1, 2):narrow(2, 0, 3), { rtol = 0, atol = 0 })
    local xd = ddpm.randn(2, 3, 4, { dtype = ddpm.float64, requires_grad = true })
    testing.gradcheck(function(t) return F.pad(t, { -1, 2, 1, -1 }) end, { xd })
    testing.gradcheck(function(t) return F.pad(t, { 1, 1, 2, 0, 1, 1 }, 'replicate') end, { xd })
    local pi = F.pad(ddpm.arange(3), { 2, 1 }, 'constant', 9)
    assert.are.equal(ddpm.int64, pi.dtype)
    assert.are.same({ 9, 9, 0, 1, 2, 9 }, pi:totable_flat())
  end)

  it('raises clear errors', function()
    local function err(fn) local ok, e = pcall(fn); assert.is_false(ok); return e end
    assert.matches('reflect padding %(5, 0%) must be smaller than dim 3', err(function() return F.pad(x, { 5, 0 }, 'reflect') end))
    assert.matches('even number', err(function() return F.pad(x, { 1, 2, 3 }) end))
    assert.matches("mode must be 'constant'", err(function() return F.pad(x, { 1, 1 }, 'wrap') end))
    assert.matches('pad: 10 padding values pad 5 dims, but input', err(function() return F.pad(x, { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }) end))
  end)
end)
