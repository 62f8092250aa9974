-- nn_attention_spec.lua: softmax / log_softmax and scaled_dot_product_attention against naive
-- loops, gradient checks (incl. non-contiguous inputs and masks), the one-key cross-attention
-- case, dropout determinism and the errors.
-- LuaJIT 2.1 (this Debian beta3 snapshot) crashes sporadically (NULL read inside the VM, ~1 run in 40)
-- when these Lua-heavy naive loops and gradchecks are JIT-compiled; valgrind and ASan find no fault in
-- libddpm, and the interpreter never crashes, so the specs run interpreted.
jit.off()
local ddpm = require 'ddpm'
local F = ddpm.nn.functional
local testing = ddpm.testing

-- softmax along dim d of a tensor, with plain Lua loops over a flat copy
local function naive_softmax(x, d, log)
  local shape = x:shape()
  local nd = #shape
  if d < 0 then d = d + nd end
  local v = x:double():contiguous():totable_flat()
  local inner = 1
  for k = d + 2, nd do inner = inner * shape[k] end
  local D = shape[d + 1]
  local out = {}
  for o = 0, #v / (D * inner) - 1 do
    for j = 0, inner - 1 do
      local mx = -math.huge
      for k = 0, D - 1 do mx = math.max(mx, v[(o * D + k) * inner + j + 1]) end
      local s = 0
      for k = 0, D - 1 do s = s + math.exp(v[(o * D + k) * inner + j + 1] - mx) end
      for k = 0, D - 1 do
        local e = (o * D + k) * inner + j + 1
        out[e] = log and (v[e] - mx - math.log(s)) or math.exp(v[e] - mx) / s
      end
    end
  end
  return ddpm.tensor(out, { dtype = ddpm.float64 }):view(shape)
end

-- attention for [B, L, E] operands (flattened batch), mask a function (b, i, j) -> additive value
local function naive_attention(q, k, v, scale, maskfn)
  local B, Lq, E = unpack(q:shape())
  local Lk, Ev = k:size(1), v:size(2)
  local qv, kv, vv = q:double():contiguous():totable_flat(), k:double():contiguous():totable_flat(),
      v:double():contiguous():totable_flat()
  local out = {}
  for b = 0, B - 1 do
    for i = 0, Lq - 1 do
      local s, mx = {}, -math.huge
      for j = 0, Lk - 1 do
        local acc = 0
        for e = 0, E - 1 do acc = acc + qv[(b * Lq + i) * E + e + 1] * kv[(b * Lk + j) * E + e + 1] end
        s[j] = acc * scale + (maskfn and maskfn(b, i, j) or 0)
        mx = math.max(mx, s[j])
      end
      local sum = 0
      for j = 0, Lk - 1 do s[j] = math.exp(s[j] - mx); sum = sum + s[j] end
      for e = 0, Ev - 1 do
        local acc = 0
        for j = 0, Lk - 1 do acc = acc + s[j] / sum * vv[(b * Lk + j) * Ev + e + 1] end
        out[(b * Lq + i) * Ev + e + 1] = acc
      end
    end
  end
  return ddpm.tensor(out, { dtype = ddpm.float64 }):view(B, Lq, Ev)
end

describe('F.softmax and F.log_softmax', function()
  it('match naive loops along every dim', function()
    local x = ddpm.randn(3, 4, 5, { generator = ddpm.Generator():manual_seed(1) }) * 4
    for _, d in ipairs({ 0, 1, 2, -1, -3 }) do
      testing.assert_close(F.softmax(x, d), naive_softmax(x, d), { rtol = 1e-5, atol = 1e-7 })
      testing.assert_close(F.log_softmax(x, d), naive_softmax(x, d, true), { rtol = 1e-5, atol = 1e-5 })
      testing.assert_close(x:softmax(d), naive_softmax(x, d), { rtol = 1e-5, atol = 1e-7 })
      testing.assert_close(x:double():log_softmax(d), naive_softmax(x, d, true), { rtol = 1e-12, atol = 1e-12 })
    end
  end)

  it('is numerically stable and follows PyTorch on -inf', function()
    local x = ddpm.tensor({ { 1000, 1001, 1002 }, { -1000, -1001, -1002 } })
    testing.assert_close(F.softmax(x, 1), naive_softmax(x, 1), { rtol = 1e-6, atol = 1e-7 })
    testing.assert_close(F.log_softmax(x, 1), naive_softmax(x, 1, true), { rtol = 1e-6, atol = 1e-5 })
    local m = ddpm.tensor({ { 0, -math.huge, 1 } })
    local p = F.softmax(m, 1):totable_flat()
    assert.are.equal(0, p[2])
    assert.is_true(math.abs(p[1] + p[3] - 1) < 1e-6)
    local all = F.softmax(ddpm.full({ 1, 3 }, -math.huge), 1):totable_flat()
    assert.is_true(all[1] ~= all[1], 'a row of -inf gives NaN, as PyTorch')
    assert.are.equal(ddpm.float64, F.softmax(x, 1, { dtype = ddpm.float64 }).dtype)
  end)

  it('match the naive loop on long rows (the 16-lane path), with -inf and NaN entries', function()
    local gen = ddpm.Generator():manual_seed(5)
    for _, n in ipairs({ 16, 17, 31, 64, 100, 130 }) do
      local x = ddpm.randn(6, n, { generator = gen }) * 6
      x:select(0, 1):narrow(0, 3, 5):fill_(-math.huge)
      x:select(0, 2):fill_(-math.huge)
      x:select(0, 3):narrow(0, n - 1, 1):fill_(0 / 0)
      x:select(0, 4):add_(500)
      local got, want = F.softmax(x, 1), naive_softmax(x, 1)
      testing.assert_close(got:narrow(0, 0, 2), want:narrow(0, 0, 2), { rtol = 1e-5, atol = 1e-7 })
      testing.assert_close(got:narrow(0, 4, 2), want:narrow(0, 4, 2), { rtol = 1e-5, atol = 1e-7 })
      for _, r in ipairs({ 2, 3 }) do -- a row of -inf, and a row holding a NaN: NaN throughout, as PyTorch
        for _, v in ipairs(got:select(0, r):totable_flat()) do assert.is_true(v ~= v, 'row ' .. r .. ' of ' .. n) end
      end
    end
  end)

  it('pass gradcheck, incl. non-contiguous inputs', function()
    local gen = ddpm.Generator():manual_seed(2)
    local x = ddpm.randn(3, 4, 5, { dtype = ddpm.float64, generator = gen, requires_grad = true })
    for _, d in ipairs({ 0, 1, -1 }) do
      testing.gradcheck(function(t) return F.softmax(t, d) end, { x }, { max_elements = 30 })
      testing.gradcheck(function(t) return F.log_softmax(t, d) end, { x }, { max_elements = 30 })
      testing.gradcheck(function(t) return F.softmax(t:transpose(0, 2), d) end, { x }, { max_elements = 30 })
    end
    assert.are.equal('SoftmaxBackward0', F.softmax(x, 0).grad_fn)
    assert.are.equal('LogSoftmaxBackward0', F.log_softmax(x, 0).grad_fn)
  end)

  it('raise clear errors', function()
    local ok, e = pcall(function() return F.softmax(ddpm.randn(2, 3), 2) end)
    assert.is_false(ok)
    assert.matches('softmax: dim 2 out of range', e)
    ok, e = pcall(function() return F.softmax(ddpm.ones(2, { dtype = ddpm.int64 }), 0) end)
    assert.matches('softmax: input must be a floating point tensor, got int64%[2%]', e)
    ok, e = pcall(function() return F.softmax(ddpm.randn(2)) end)
    assert.matches('dim must be given', e)
  end)
end)

describe('F.scaled_dot_product_attention', function()
  local gen = ddpm.Generator():manual_seed(3)
  local q = ddpm.randn(2, 3, 5, 4, { generator = gen })
  local k = ddpm.randn(2, 3, 6, 4, { generator = gen })
  local v = ddpm.randn(2, 3, 6, 3, { generator = gen })
  local flat = function(t) return t:reshape(-1, t:size(-2), t:size(-1)) end

  it('matches a naive loop (4-D and 3-D, default and explicit scale)', function()
    local ref = naive_attention(flat(q), flat(k), flat(v), 1 / math.sqrt(4)):view(2, 3, 5, 3)
    testing.assert_close(F.scaled_dot_product_attention(q, k, v), ref, { rtol = 1e-5, atol = 1e-6 })
    testing.assert_close(F.scaled_dot_product_attention(flat(q), flat(k), flat(v)), ref:view(6, 5, 3),
      { rtol = 1e-5, atol = 1e-6 })
    testing.assert_close(F.scaled_dot_product_attention(q, k, v, { scale = 0.3 }),
      naive_attention(flat(q), flat(k), flat(v), 0.3):view(2, 3, 5, 3), { rtol = 1e-5, atol = 1e-6 })
    testing.assert_close(F.scaled_dot_product_attention(q:double(), k:double(), v:double(), nil, 0, false, 0.3),
      naive_attention(flat(q), flat(k), flat(v), 0.3):view(2, 3, 5, 3), { rtol = 1e-12, atol = 1e-12 })
  end)

  it('applies float, bool and causal masks with broadcasting', function()
    local fm = ddpm.randn(5, 6, { generator = gen })
    local fv = fm:totable_flat()
    testing.assert_close(F.scaled_dot_product_attention(q, k, v, { attn_mask = fm }),
      naive_attention(flat(q), flat(k), flat(v), 0.5, function(_, i, j) return fv[i * 6 + j + 1] end):view(2, 3, 5, 3),
      { rtol = 1e-5, atol = 1e-6 })
    -- bool mask [2, 1, 1, 6]: batch 0 drops key 2, batch 1 drops keys 0 and 5
    local keep = ddpm.tensor({ { { { true, true, false, true, true, true } } }, { { { false, true, true, true, true, false } } } })
    local kv = keep:totable_flat()
    testing.assert_close(F.scaled_dot_product_attention(q, k, v, { attn_mask = keep }),
      naive_attention(flat(q), flat(k), flat(v), 0.5, function(b, _, j)
        return kv[math.floor(b / 3) * 6 + j + 1] ~= 0 and 0 or -math.huge
      end):view(2, 3, 5, 3), { rtol = 1e-5, atol = 1e-6 })
    testing.assert_close(F.scaled_dot_product_attention(q, k, v, { is_causal = true }),
      naive_attention(flat(q), flat(k), flat(v), 0.5, function(_, i, j) return j > i and -math.huge or 0 end):view(2, 3, 5, 3),
      { rtol = 1e-5, atol = 1e-6 })
    -- a row with every key masked is NaN, as PyTorch's reference
    local none = ddpm.zeros(5, 6, { dtype = ddpm.bool })
    local o = F.scaled_dot_product_attention(q, k, v, { attn_mask = none }):totable_flat()
    assert.is_true(o[1] ~= o[1])
  end)

  it('reads non-contiguous heads in place and passes gradcheck', function()
    local g2 = ddpm.Generator():manual_seed(4)
    local o = { dtype = ddpm.float64, generator = g2, requires_grad = true }
    -- diffusers' layout: [B, L, heads * D] viewed as [B, L, heads, D] and transposed to [B, heads, L, D]
    local qp, kp, vp = ddpm.randn(2, 4, 6, o), ddpm.randn(2, 3, 6, o), ddpm.randn(2, 3, 4, o)
    local function heads(t, h) return t:view(t:size(0), t:size(1), h, -1):transpose(1, 2) end
    local function f(a, b, c) return F.scaled_dot_product_attention(heads(a, 2), heads(b, 2), heads(c, 2)) end
    local ref = naive_attention(heads(qp, 2):reshape(4, 4, 3), heads(kp, 2):reshape(4, 3, 3), heads(vp, 2):reshape(4, 3, 2),
      1 / math.sqrt(3))
    testing.assert_close(f(qp, kp, vp), ref:view(2, 2, 4, 2), { rtol = 1e-12, atol = 1e-12 })
    testing.gradcheck(f, { qp, kp, vp })
    local m = ddpm.randn(4, 3, { dtype = ddpm.float64, generator = g2 })
    testing.gradcheck(function(a, b, c)
      return F.scaled_dot_product_attention(heads(a, 2), heads(b, 2), heads(c, 2), { attn_mask = m, scale = 0.7 })
    end, { qp, kp, vp })
    testing.gradcheck(function(a, b, c)
      return F.scaled_dot_product_attention(a, b, c, { is_causal = true })
    end, { qp, kp:narrow(1, 0, 3):detach():requires_grad_(), vp })
    assert.are.equal('ScaledDotProductAttentionBackward0', f(qp, kp, vp).grad_fn)
  end)

  it('one key: output is v broadcast and q, k get exactly zero gradient', function()
    local g3 = ddpm.Generator():manual_seed(5)
    local qq = ddpm.randn(4, 8, 64, 16, { generator = g3, requires_grad = true })
    local kk = ddpm.randn(4, 8, 1, 16, { generator = g3, requires_grad = true })
    local vv = ddpm.randn(4, 8, 1, 16, { generator = g3, requires_grad = true })
    local out = F.scaled_dot_product_attention(qq, kk, vv)
    assert.is_true(out:equal(vv:detach():expand(4, 8, 64, 16)))
    local g = ddpm.randn(4, 8, 64, 16, { generator = g3 })
    out:backward(g)
    assert.are.equal(0, qq.grad:abs():amax():item())
    assert.are.equal(0, kk.grad:abs():amax():item())
    testing.assert_close(vv.grad, g:sum(2, true), { rtol = 1e-5, atol = 1e-5 })
    -- a finite mask keeps the softmax at 1; a masked single key gives NaN like PyTorch
    local fm = ddpm.full({ 64, 1 }, 3.5)
    assert.is_true(F.scaled_dot_product_attention(qq, kk, vv, { attn_mask = fm }):equal(vv:detach():expand(4, 8, 64, 16)))
    local d = ddpm.randn(3, 1, 2, { dtype = ddpm.float64, requires_grad = true })
    testing.gradcheck(function(a, b, c) return F.scaled_dot_product_attention(a, b, c) end,
      { ddpm.randn(3, 4, 2, { dtype = ddpm.float64, requires_grad = true }), d,
        ddpm.randn(3, 1, 5, { dtype = ddpm.float64, requires_grad = true }) })
  end)

  it('dropout is reproducible from a generator and matches its gradient', function()
    local g4 = ddpm.Generator():manual_seed(6)
    local o = { dtype = ddpm.float64, generator = g4, requires_grad = true }
    local a, b, c = ddpm.randn(2, 5, 3, o), ddpm.randn(2, 4, 3, o), ddpm.randn(2, 4, 2, o)
    local function f(x, y, z)
      return F.scaled_dot_product_attention(x, y, z, { dropout_p = 0.4, generator = ddpm.Generator():manual_seed(77) })
    end
    local y1, y2 = f(a, b, c), f(a, b, c)
    assert.is_true(y1:equal(y2))
    assert.is_false(y1:equal(F.scaled_dot_product_attention(a, b, c)))
    testing.gradcheck(f, { a, b, c })
    -- the default generator advances: two calls differ
    local z1 = F.scaled_dot_product_attention(a, b, c, { dropout_p = 0.5 })
    local z2 = F.scaled_dot_product_attention(a, b, c, { dropout_p = 0.5 })
    assert.is_false(z1:equal(z2))
  end)

  it('raises clear errors', function()
    local function err(fn) local ok, e = pcall(fn); assert.is_false(ok); return e end
    assert.matches('query float32%[2, 3, 5, 4%] on cpu and key float32%[2, 3, 6, 5%] on cpu must have the same embedding size',
      err(function() return F.scaled_dot_product_attention(q, ddpm.randn(2, 3, 6, 5), v) end))
    assert.matches('must agree in their leading', err(function() return F.scaled_dot_product_attention(q, ddpm.randn(2, 2, 6, 4), v) end))
    assert.matches('same sequence length', err(function() return F.scaled_dot_product_attention(q, k, ddpm.randn(2, 3, 7, 3)) end))
    assert.matches('same number of dims', err(function() return F.scaled_dot_product_attention(q, flat(k), v) end))
    assert.matches('attn_mask float32%[4, 6%] on cpu does not broadcast',
      err(function() return F.scaled_dot_product_attention(q, k, v, { attn_mask = ddpm.zeros(4, 6) }) end))
    assert.matches('not both', err(function()
      return F.scaled_dot_product_attention(q, k, v, { attn_mask = ddpm.zeros(5, 6), is_causal = true })
    end))
    assert.matches('query must be a floating point tensor', err(function()
      return F.scaled_dot_product_attention(ddpm.ones(1, 2, 2, { dtype = ddpm.int64 }), k, v)
    end))
  end)
end)
