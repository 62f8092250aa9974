-- nn_losses_spec.lua: dropout (Philox mask, scale, reuse in backward), the pointwise losses,
-- nll_loss and cross_entropy (class indices and probabilities, weights, ignore_index, label
-- smoothing) against naive formulas, one_hot, embedding and gelu, with gradient checks and errors.
-- LuaJIT 2.1 (this Debian beta3 snapshot) crashes sporadically (NULL read inside the VM, ~1 run in 40)
-- when these Lua-heavy naive loops and gradchecks are JIT-compiled; valgrind and ASan find no fault in
-- libddpm, and the interpreter never crashes, so the specs run interpreted.
jit.off()
local ddpm = require 'ddpm'
local F = ddpm.nn.functional
local testing = ddpm.testing

local function flat(t) return t:double():contiguous():totable_flat() end

describe('F.dropout', function()
  it('zeroes about p of the elements, scales the rest, and is reproducible', function()
    local x = ddpm.randn(100, 100)
    local y = F.dropout(x, 0.3, true, { generator = ddpm.Generator():manual_seed(5) })
    local xv, yv = flat(x), flat(y)
    local zeros = 0
    for i = 1, #xv do
      if yv[i] == 0 then zeros = zeros + 1
      else assert.is_true(math.abs(yv[i] - xv[i] / 0.7) <= 1e-6 * math.abs(xv[i]) + 1e-7) end
    end
    assert.is_true(math.abs(zeros / #xv - 0.3) < 0.02, 'drop rate ' .. zeros / #xv)
    local y2 = F.dropout(x, 0.3, true, { generator = ddpm.Generator():manual_seed(5) })
    assert.is_true(y:equal(y2))
    assert.is_false(y:equal(F.dropout(x, 0.3, true, { generator = ddpm.Generator():manual_seed(6) })))
  end)

  it('is the identity when not training or p = 0, and zero at p = 1', function()
    local x = ddpm.randn(4, 5)
    assert.is_true(F.dropout(x, 0.5, false):equal(x))
    assert.is_true(F.dropout(x, 0):equal(x))
    assert.are.equal(0, F.dropout(x, 1):abs():amax():item())
  end)

  it('reuses its mask in backward', function()
    local x = ddpm.randn(50, 40, { requires_grad = true })
    local y = F.dropout(x, 0.5, true, { generator = ddpm.Generator():manual_seed(9) })
    local g = ddpm.randn(50, 40)
    y:backward(g)
    local kept = y:detach():ne(ddpm.zeros({})):float()
    testing.assert_close(x.grad, g * kept * 2, { rtol = 1e-6, atol = 1e-6 })
    local xd = ddpm.randn(4, 6, { dtype = ddpm.float64, requires_grad = true })
    testing.gradcheck(function(t) return F.dropout(t:t(), 0.4, true, { generator = ddpm.Generator():manual_seed(3) }) end, { xd })
    assert.matches('between 0 and 1', select(2, pcall(F.dropout, x, 1.5)))
  end)
end)

describe('pointwise losses', function()
  local gen = ddpm.Generator():manual_seed(1)
  local a, b = ddpm.randn(3, 4, { generator = gen }), ddpm.randn(3, 4, { generator = gen }) * 2
  local function naive(kind, beta)
    local av, bv, out = flat(a), flat(b), {}
    for i = 1, #av do
      local d = av[i] - bv[i]
      if kind == 'mse' then out[i] = d * d
      elseif kind == 'l1' then out[i] = math.abs(d)
      elseif math.abs(d) < beta then out[i] = 0.5 * d * d / beta
      else out[i] = math.abs(d) - 0.5 * beta end
    end
    local s = 0
    for i = 1, #out do s = s + out[i] end
    return ddpm.tensor(out, { dtype = ddpm.float64 }):view(3, 4), s
  end

  it('match naive formulas for every reduction', function()
    for _, kind in ipairs({ 'mse', 'l1', 'smooth_l1' }) do
      local fn = F[kind .. '_loss']
      local none, sum = naive(kind, 1.0)
      testing.assert_close(fn(a, b, { reduction = 'none' }), none, { rtol = 1e-6, atol = 1e-6 })
      testing.assert_close(fn(a, b, { reduction = 'sum' }), ddpm.tensor(sum), { rtol = 1e-6, atol = 1e-5 })
      testing.assert_close(fn(a, b), ddpm.tensor(sum / 12), { rtol = 1e-6, atol = 1e-6 })
      testing.assert_close(fn(a, b, 'sum'), ddpm.tensor(sum), { rtol = 1e-6, atol = 1e-5 })
      assert.are.same({}, fn(a, b):shape())
    end
    local none2, sum2 = naive('smooth_l1', 0.5)
    testing.assert_close(F.smooth_l1_loss(a, b, { beta = 0.5, reduction = 'none' }), none2, { rtol = 1e-6, atol = 1e-6 })
    testing.assert_close(F.huber_loss(a, b, { delta = 0.5 }), ddpm.tensor(sum2 / 12 * 0.5), { rtol = 1e-6, atol = 1e-6 })
    testing.assert_close(F.smooth_l1_loss(a, b, { beta = 0 }), F.l1_loss(a, b), { rtol = 1e-6, atol = 1e-7 })
    -- mean over a UNet-sized batch accumulates in double: equal to the float64 result
    local big1, big2 = ddpm.randn(128, 3, 16, 16, { generator = gen }), ddpm.randn(128, 3, 16, 16, { generator = gen })
    testing.assert_close(F.mse_loss(big1, big2), F.mse_loss(big1:double(), big2:double()), { rtol = 1e-6, atol = 0 })
  end)

  it('pass gradcheck for both arguments, broadcasting and non-contiguous', function()
    local o = { dtype = ddpm.float64, requires_grad = true, generator = gen }
    local x, t = ddpm.randn(3, 4, o), (ddpm.randn(3, 4, o) * 2):detach():requires_grad_()
    local row = ddpm.randn(4, o)
    for _, kind in ipairs({ 'mse', 'l1', 'smooth_l1' }) do
      local fn = F[kind .. '_loss']
      for _, red in ipairs({ 'mean', 'sum', 'none' }) do
        testing.gradcheck(function(p, q) return fn(p, q, { reduction = red }) end, { x, t })
      end
      testing.gradcheck(function(p, r) return fn(p:t(), r:view(4, 1), { reduction = 'mean' }) end, { x, row })
    end
    testing.gradcheck(function(p, q) return F.smooth_l1_loss(p, q, { beta = 0.3 }) end, { x, t })
    assert.are.equal('MseLossBackward0', F.mse_loss(x, t).grad_fn)
  end)

  it('raise clear errors', function()
    local function err(fn) local ok, e = pcall(fn); assert.is_false(ok); return e end
    assert.matches("reduction must be 'none', 'mean' or 'sum', got avg", err(function() return F.mse_loss(a, b, { reduction = 'avg' }) end))
    assert.matches('mse_loss: shapes %[3, 4%] and %[5%] do not broadcast', err(function() return F.mse_loss(a, ddpm.randn(5)) end))
    assert.matches('target must be a floating point tensor', err(function() return F.l1_loss(a, ddpm.ones(3, 4, { dtype = ddpm.int64 })) end))
  end)
end)

describe('F.nll_loss and F.cross_entropy', function()
  local gen = ddpm.Generator():manual_seed(2)
  local logits = ddpm.randn(5, 4, { generator = gen }) * 2
  local target = ddpm.tensor({ 0, 3, 1, 3, 2 }, { dtype = ddpm.int64 })
  local weight = ddpm.tensor({ 0.5, 2.0, 1.0, 1.5 })

  -- naive cross entropy with PyTorch's weight / ignore_index / label smoothing rules
  local function naive_ce(lg, tg, w, ignore, ls, red)
    local N, C = lg:size(0), lg:size(1)
    local lv, tv, wv = flat(lg), flat(tg), w and flat(w)
    local losses, num, den = {}, 0, 0
    for n = 0, N - 1 do
      local mx = -math.huge
      for c = 0, C - 1 do mx = math.max(mx, lv[n * C + c + 1]) end
      local s = 0
      for c = 0, C - 1 do s = s + math.exp(lv[n * C + c + 1] - mx) end
      local function logp(c) return lv[n * C + c + 1] - mx - math.log(s) end
      local t = tv[n + 1]
      if t == ignore then losses[n + 1] = 0
      else
        local wt = wv and wv[t + 1] or 1
        local nll = -wt * logp(t)
        local smooth = 0
        for c = 0, C - 1 do smooth = smooth - (wv and wv[c + 1] or 1) * logp(c) end
        losses[n + 1] = (1 - ls) * nll + ls / C * smooth
        num = num + losses[n + 1]
        den = den + wt
      end
    end
    if red == 'none' then return ddpm.tensor(losses, { dtype = ddpm.float64 }) end
    local total = 0
    for _, l in ipairs(losses) do total = total + l end
    if red == 'sum' then return ddpm.tensor(total, { dtype = ddpm.float64 }) end
    return ddpm.tensor(total / den, { dtype = ddpm.float64 })
  end

  it('cross_entropy matches a naive formula (weights, ignore_index, label smoothing, reductions)', function()
    local tg2 = ddpm.tensor({ 0, -100, 1, 3, -100 }, { dtype = ddpm.int64 })
    for _, red in ipairs({ 'mean', 'sum', 'none' }) do
      for _, ls in ipairs({ 0, 0.2 }) do
        testing.assert_close(F.cross_entropy(logits, target, { reduction = red, label_smoothing = ls }),
          naive_ce(logits, target, nil, -100, ls, red), { rtol = 1e-5, atol = 1e-6 })
        testing.assert_close(F.cross_entropy(logits, tg2, { reduction = red, label_smoothing = ls, weight = weight }),
          naive_ce(logits, tg2, weight, -100, ls, red), { rtol = 1e-5, atol = 1e-6 })
      end
    end
    testing.assert_close(F.cross_entropy(logits, target, weight), naive_ce(logits, target, weight, -100, 0, 'mean'),
      { rtol = 1e-5, atol = 1e-6 })
    testing.assert_close(F.cross_entropy(logits, target, { ignore_index = 3 }), naive_ce(logits, target, nil, 3, 0, 'mean'),
      { rtol = 1e-5, atol = 1e-6 })
    testing.assert_close(F.nll_loss(F.log_softmax(logits, 1), target), naive_ce(logits, target, nil, -100, 0, 'mean'),
      { rtol = 1e-5, atol = 1e-6 })
  end)

  it('cross_entropy takes class probabilities and spatial [N, C, d] inputs', function()
    local probs = F.softmax(ddpm.randn(5, 4, { generator = gen }), 1)
    local lp = flat(F.log_softmax(logits:double(), 1))
    local pv = flat(probs)
    local s = 0
    for i = 1, 20 do s = s - pv[i] * lp[i] end
    testing.assert_close(F.cross_entropy(logits, probs), ddpm.tensor(s / 5), { rtol = 1e-5, atol = 1e-6 })
    local onehot = F.one_hot(target, 4):float()
    testing.assert_close(F.cross_entropy(logits, onehot, { label_smoothing = 0.1 }),
      F.cross_entropy(logits, target, { label_smoothing = 0.1 }), { rtol = 1e-5, atol = 1e-6 })
    -- [N, C, d] with target [N, d] equals the flattened [N*d, C] problem
    local lg3 = ddpm.randn(2, 4, 3, { generator = gen })
    local t3 = ddpm.tensor({ { 0, 1, 2 }, { 3, 3, 0 } }, { dtype = ddpm.int64 })
    testing.assert_close(F.cross_entropy(lg3, t3), F.cross_entropy(lg3:permute(0, 2, 1):reshape(6, 4), t3:reshape(6)),
      { rtol = 1e-5, atol = 1e-6 })
    assert.are.same({ 2, 3 }, F.cross_entropy(lg3, t3, { reduction = 'none' }):shape())
    -- unbatched [C] input with a 0-d target
    testing.assert_close(F.cross_entropy(logits:select(0, 1), target:select(0, 1)),
      F.cross_entropy(logits:narrow(0, 1, 1), target:narrow(0, 1, 1)), { rtol = 1e-6, atol = 1e-7 })
  end)

  it('passes gradcheck', function()
    local o = { dtype = ddpm.float64, requires_grad = true, generator = gen }
    local x = ddpm.randn(5, 4, o)
    local tg2 = ddpm.tensor({ 0, -100, 1, 3, 2 }, { dtype = ddpm.int64 })
    local wd = weight:double()
    for _, red in ipairs({ 'mean', 'sum', 'none' }) do
      testing.gradcheck(function(t) return F.cross_entropy(t, tg2, { reduction = red, weight = wd, label_smoothing = 0.1 }) end, { x })
      testing.gradcheck(function(t) return F.nll_loss(t, target, { reduction = red }) end, { x })
    end
    local p = F.softmax(ddpm.randn(5, 4, { dtype = ddpm.float64, generator = gen }), 1)
    testing.gradcheck(function(t) return F.cross_entropy(t:t():t(), p, { weight = wd }) end, { x })
    local x3 = ddpm.randn(2, 4, 3, o)
    testing.gradcheck(function(t) return F.nll_loss(F.log_softmax(t, 1), ddpm.tensor({ { 0, 1, 2 }, { 3, 3, 0 } }, { dtype = ddpm.int64 })) end, { x3 })
  end)

  it('raises clear errors', function()
    local function err(fn) local ok, e = pcall(fn); assert.is_false(ok); return e end
    assert.matches('nll_loss: target 4 is out of bounds for 4 classes',
      err(function() return F.cross_entropy(logits, ddpm.tensor({ 0, 4, 1, 1, 1 }, { dtype = ddpm.int64 })) end))
    assert.matches('do not match', err(function() return F.nll_loss(logits, ddpm.tensor({ 0, 1 }, { dtype = ddpm.int64 })) end))
    assert.matches('target must hold class indices', err(function() return F.nll_loss(logits, ddpm.zeros(5, { dtype = ddpm.uint8 })) end))
    assert.matches('probability targets must have the input shape', err(function() return F.cross_entropy(logits, ddpm.zeros(5, 3)) end))
  end)
end)

describe('F.one_hot, F.embedding, F.gelu', function()
  it('one_hot gives int64 rows and infers the class count', function()
    local idx = ddpm.tensor({ { 0, 2 }, { 1, 4 } }, { dtype = ddpm.int64 })
    local y = F.one_hot(idx, 5)
    assert.are.equal(ddpm.int64, y.dtype)
    assert.are.same({ 2, 2, 5 }, y:shape())
    assert.are.same({ 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1 }, y:totable_flat())
    assert.are.same({ 2, 2, 5 }, F.one_hot(idx):shape())
    assert.matches('smaller than num_classes 3', select(2, pcall(F.one_hot, idx, 3)))
    assert.matches('non%-negative', select(2, pcall(F.one_hot, ddpm.tensor({ -1 }, { dtype = ddpm.int64 }), 3)))
    assert.matches('int64', select(2, pcall(F.one_hot, ddpm.tensor({ 1 }), 3)))
  end)

  it('embedding gathers rows, accumulates repeated gradients and honours padding_idx', function()
    local w = ddpm.randn(6, 3, { dtype = ddpm.float64, requires_grad = true })
    local idx = ddpm.tensor({ { 1, 4, 1 }, { 0, 5, 2 } }, { dtype = ddpm.int64 })
    local e = F.embedding(idx, w)
    assert.are.same({ 2, 3, 3 }, e:shape())
    testing.assert_close(e:select(0, 1):select(0, 1), w:detach():select(0, 5), { rtol = 0, atol = 0 })
    testing.gradcheck(function(ww) return F.embedding(idx, ww) end, { w })
    w.grad = nil
    F.embedding(idx, w, { padding_idx = 1 }):sum():backward()
    local gv = flat(w.grad)
    assert.are.same({ 0, 0, 0 }, { gv[4], gv[5], gv[6] }) -- row 1 takes no gradient
    assert.are.same({ 1, 1, 1 }, { gv[1], gv[2], gv[3] })
    testing.assert_close(F.embedding(idx, w, { padding_idx = 1 }), e, { rtol = 0, atol = 0 })
  end)

  it('gelu matches the erf and tanh formulas', function()
    local x = ddpm.linspace(-5, 5, 41)
    local xv, y, yt = flat(x), flat(F.gelu(x)), flat(F.gelu(x, { approximate = 'tanh' }))
    local function erf(z) -- Abramowitz-Stegun 7.1.26 is too coarse; integrate instead
      local n, s = 2000, 0
      for i = 0, n - 1 do
        local t = (i + 0.5) / n * z
        s = s + math.exp(-t * t)
      end
      return s * z / n * 2 / math.sqrt(math.pi)
    end
    for i = 1, #xv do
      local v = xv[i]
      assert.is_true(math.abs(y[i] - 0.5 * v * (1 + erf(v / math.sqrt(2)))) < 1e-5)
      local th = 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ^ 3)))
      assert.is_true(math.abs(yt[i] - th) < 1e-5)
    end
    local xd = ddpm.randn(7, { dtype = ddpm.float64, requires_grad = true })
    testing.gradcheck(function(t) return F.gelu(t) end, { xd })
    testing.gradcheck(function(t) return F.gelu(t, 'tanh') end, { xd })
  end)
end)
