-- autograd_gradcheck_spec.lua: finite-difference gradient checks (float64) of every
-- differentiable core op, over several shapes with broadcast and non-contiguous inputs, and
-- a check that the checker rejects a deliberately wrong gradient.
local ddpm = require 'ddpm'
local gradcheck = require('ddpm.testing').gradcheck

local gen = ddpm.Generator():manual_seed(7)
-- a float64 leaf of the given shape with values uniform in [lo, hi)
local function U(shape, lo, hi)
  lo, hi = lo or -1, hi or 1
  local t = ddpm.rand(shape, { dtype = ddpm.float64, generator = gen }) * (hi - lo) + lo
  return t:detach():requires_grad_()
end
-- values bounded away from 0 (for abs, relu, sign-sensitive ops): magnitude in [0.2, 1.5)
local function NZ(shape)
  local m = ddpm.rand(shape, { dtype = ddpm.float64, generator = gen }) * 1.3 + 0.2
  local s = ddpm.rand(shape, { dtype = ddpm.float64, generator = gen }):gt(0.5):double() * 2 - 1
  return (m * s):detach():requires_grad_()
end
local function leaf(values) return ddpm.tensor(values, { dtype = ddpm.float64, requires_grad = true }) end

-- each case: name, function, inputs (built lazily so every case draws fresh values), options
local cases = {}
local function case(name, fn, make, opts) cases[#cases + 1] = { name, fn, make, opts } end

-- ---- unary ops, contiguous and through a transposed or strided view -----------------------------
local unary = {
  { 'neg', function(x) return -x end, U },
  { 'abs', function(x) return x:abs() end, NZ },
  { 'exp', function(x) return x:exp() end, U },
  { 'log', function(x) return x:log() end, function(s) return U(s, 0.5, 3) end },
  { 'sqrt', function(x) return x:sqrt() end, function(s) return U(s, 0.5, 3) end },
  { 'rsqrt', function(x) return x:rsqrt() end, function(s) return U(s, 0.5, 3) end },
  { 'sin', function(x) return x:sin() end, U },
  { 'cos', function(x) return x:cos() end, U },
  { 'tanh', function(x) return x:tanh() end, U },
  { 'sigmoid', function(x) return x:sigmoid() end, U },
  { 'relu', function(x) return x:relu() end, NZ },
  { 'silu', function(x) return x:silu() end, function(s) return U(s, -3, 3) end },
  { 'gelu', function(x) return x:gelu() end, function(s) return U(s, -3, 3) end },
  { 'gelu tanh', function(x) return x:gelu({ approximate = 'tanh' }) end, function(s) return U(s, -3, 3) end },
  { 'square', function(x) return x:square() end, U },
  { 'reciprocal', function(x) return x:reciprocal() end, function(s) return U(s, 0.5, 2) end },
  { 'log1p', function(x) return x:log1p() end, function(s) return U(s, 0, 2) end },
  { 'expm1', function(x) return x:expm1() end, U },
  { 'floor (zero gradient)', function(x) return x:floor() * 1 end, function(s) return U(s, 0.1, 0.9) end },
  { 'ceil (zero gradient)', function(x) return x:ceil() end, function(s) return U(s, 0.1, 0.9) end },
  { 'round (zero gradient)', function(x) return x:round() end, function(s) return U(s, 0.1, 0.4) end },
  { 'sign (zero gradient)', function(x) return x:sign() end, NZ },
}
for _, u in ipairs(unary) do
  local name, f, make = u[1], u[2], u[3]
  case(name .. ' [2,3]', f, function() return { make({ 2, 3 }) } end)
  case(name .. ' transposed', function(x) return f(x:t()) end, function() return { make({ 3, 4 }) } end)
  case(name .. ' strided', function(x) return f(x:slice(1, 1, nil, 2)) end, function() return { make({ 2, 7 }) } end)
end

-- ---- ops with a number -------------------------------------------------------------------------------
local scalar = {
  { 'add number', function(x) return x + 2.5 end, U },
  { 'number add', function(x) return 2.5 + x end, U },
  { 'sub number', function(x) return x - 1.5 end, U },
  { 'number sub', function(x) return 1.5 - x end, U },
  { 'mul number', function(x) return x * -3 end, U },
  { 'div number', function(x) return x / 4 end, U },
  { 'number div', function(x) return 2 / x end, function(s) return U(s, 0.5, 2) end },
  { 'pow 2', function(x) return x ^ 2 end, U },
  { 'pow 3', function(x) return x:pow(3) end, U },
  { 'pow 0.5', function(x) return x ^ 0.5 end, function(s) return U(s, 0.5, 2) end },
  { 'pow -1', function(x) return x ^ -1 end, function(s) return U(s, 0.5, 2) end },
  { 'pow 1.7', function(x) return x ^ 1.7 end, function(s) return U(s, 0.5, 2) end },
  { 'pow 0', function(x) return x ^ 0 end, U },
  { 'pow 1', function(x) return x ^ 1 end, U },
  { 'number pow', function(x) return 1.5 ^ x end, U },
  { 'clamp', function(x) return x:clamp(-0.5, 0.5) end, function(s) return leaf({ { -0.9, -0.2, 0.3 }, { 0.8, 0.1, -0.7 } }) end },
  { 'clamp min only', function(x) return x:clamp({ min = 0 }) end, function() return leaf({ { -0.5, 0.5, 1.5 }, { 0.3, -0.2, 2 } }) end },
  { 'add alpha', function(x, y) return x:add(y, { alpha = 2 }) end, function() return { U({ 2, 3 }), U({ 3 }) } end },
}
for _, s in ipairs(scalar) do
  local name, f, make = s[1], s[2], s[3]
  case(name, f, function()
    local r = make({ 2, 3 })
    if type(r) == 'table' and not ddpm.is_tensor(r) then return r end
    return { r }
  end)
  case(name .. ' permuted', function(x, ...) return f(x:permute(1, 0), ...) end, function()
    local r = make({ 3, 2 })
    if type(r) == 'table' and not ddpm.is_tensor(r) then return { r[1]:detach():t():contiguous():requires_grad_(), r[2] } end
    return { r }
  end)
end

-- ---- binary ops with broadcasting ------------------------------------------------------------------------
local binary = {
  { 'add', function(a, b) return a + b end },
  { 'sub', function(a, b) return a - b end },
  { 'mul', function(a, b) return a * b end },
  { 'div', function(a, b) return a / b end, 0.5, 2 },
  { 'pow', function(a, b) return a ^ b end, 0.5, 2 },
  { 'maximum', function(a, b) return ddpm.maximum(a, b) end },
  { 'minimum', function(a, b) return a:minimum(b) end },
}
local bshapes = {
  { { 2, 3 }, { 2, 3 } },
  { { 2, 1, 4 }, { 3, 1 } },
  { { 4 }, { 3, 1 } },
  { { 2, 3 }, {} },
  { { 1 }, { 2, 2 } },
}
for _, b in ipairs(binary) do
  local name, f, lo, hi = b[1], b[2], b[3], b[4]
  for _, sh in ipairs(bshapes) do
    case(string.format('%s %s with %s', name, table.concat(sh[1], 'x'), table.concat(sh[2], 'x')), f,
      function() return { U(sh[1], lo, hi), U(sh[2], lo, hi) } end)
  end
  case(name .. ' of transposed and expanded views', function(a, b) return f(a:t(), b:expand(4, 3)) end,
    function() return { U({ 3, 4 }, lo, hi), U({ 1, 3 }, lo, hi) } end)
end
case('where', function(a, b) return ddpm.where(a:gt(0), a, b) end, function() return { NZ({ 3, 4 }), U({ 4 }) } end)
case('where with a broadcast condition and a number',
  function(a) return ddpm.where(ddpm.tensor({ { true }, { false } }), a, 0.5) end, function() return { U({ 2, 3 }) } end)

-- ---- reductions ----------------------------------------------------------------------------------------------
local red = {
  { 'sum all', function(x) return x:sum() end },
  { 'sum dim 1', function(x) return x:sum(1) end },
  { 'sum dims {0,2} keepdim', function(x) return x:sum({ 0, 2 }, true) end },
  { 'sum dim -1 of a permuted view', function(x) return x:permute(2, 0, 1):sum(-1) end },
  { 'mean all', function(x) return x:mean() end },
  { 'mean dims {1,2}', function(x) return x:mean({ 1, 2 }) end },
  { 'mean keepdim', function(x) return x:mean(0, true) end },
  { 'var all', function(x) return x:var() end },
  { 'var dim 1 correction 0', function(x) return x:var(1, { correction = 0 }) end },
  { 'var dims {0,2} keepdim', function(x) return x:var({ 0, 2 }, { keepdim = true }) end },
  { 'var unbiased=false', function(x) return x:var(2, { unbiased = false }) end },
  { 'std', function(x) return x:std() end },
  { 'std dim keepdim', function(x) return x:std(1, { keepdim = true }) end },
  { 'amax all', function(x) return x:amax() end },
  { 'amax dims', function(x) return x:amax({ 0, 2 }) end },
  { 'amin dim keepdim', function(x) return x:amin(1, true) end },
  { 'max all', function(x) return x:max() end },
  { 'min all', function(x) return x:min() end },
  { 'max dim values', function(x) return (x:max(1)) end },
  { 'min dim values keepdim', function(x) return (x:min(2, true)) end },
  { 'max over a strided view', function(x) return (x:slice(2, 0, nil, 2):max(2)) end },
  { 'norm', function(x) return x:norm() end },
}
for _, r in ipairs(red) do case(r[1], r[2], function() return { U({ 2, 3, 4 }) } end) end

-- ---- linear algebra -----------------------------------------------------------------------------------------------
local mm = {
  { 'dot', { 4 }, { 4 } }, { 'vector @ matrix', { 4 }, { 4, 3 } }, { 'matrix @ vector', { 3, 4 }, { 4 } },
  { 'mm', { 2, 4 }, { 4, 3 } }, { 'batched @ matrix', { 2, 3, 4 }, { 4, 2 } }, { 'matrix @ batched', { 3, 4 }, { 2, 4, 2 } },
  { 'batched @ vector', { 2, 3, 4 }, { 4 } }, { 'vector @ batched', { 4 }, { 2, 4, 3 } },
  { 'broadcast batches', { 2, 1, 3, 4 }, { 3, 4, 2 } },
}
for _, m in ipairs(mm) do
  case('matmul ' .. m[1], function(a, b) return a:matmul(b) end, function() return { U(m[2]), U(m[3]) } end)
end
case('matmul of transposed operands', function(a, b) return a:t():matmul(b:t()) end,
  function() return { U({ 4, 3 }), U({ 2, 4 }) } end)
case('mm', function(a, b) return ddpm.mm(a, b) end, function() return { U({ 3, 2 }), U({ 2, 5 }) } end)
case('bmm', function(a, b) return a:bmm(b) end, function() return { U({ 2, 3, 4 }), U({ 2, 4, 2 }) } end)
case('bmm with a broadcast batch', function(a, b) return ddpm.bmm(a, b) end,
  function() return { U({ 1, 3, 4 }), U({ 3, 4, 2 }) } end)
case('bmm of transposed views', function(a, b) return a:transpose(1, 2):bmm(b) end,
  function() return { U({ 2, 4, 3 }), U({ 2, 4, 2 }) } end)
local F = ddpm.nn.functional
case('linear with bias', function(x, w, b) return F.linear(x, w, b) end,
  function() return { U({ 5, 4 }), U({ 3, 4 }), U({ 3 }) } end)
case('linear without bias', function(x, w) return F.linear(x, w) end, function() return { U({ 2, 3, 4 }), U({ 3, 4 }) } end)
case('linear of a 1-D input', function(x, w, b) return F.linear(x, w, b) end,
  function() return { U({ 4 }), U({ 3, 4 }), U({ 3 }) } end)
case('linear of a transposed input and weight', function(x, w, b) return F.linear(x:t(), w:t(), b) end,
  function() return { U({ 4, 5 }), U({ 4, 3 }), U({ 3 }) } end)

-- ---- views --------------------------------------------------------------------------------------------------------
local views = {
  { 'view', function(x) return x:view(4, 6) end },
  { 'view -1', function(x) return x:view(-1, 3) end },
  { 'reshape of a non-viewable tensor', function(x) return x:transpose(0, 2):reshape(12, 2) end },
  { 'permute', function(x) return x:permute(2, 0, 1) end },
  { 'transpose', function(x) return x:transpose(0, 1) end },
  { 'T', function(x) return x.T end },
  { 'expand', function(x) return x:select(1, 0):unsqueeze(1):expand(2, 5, 4) end },
  { 'expand_as', function(x) return x:sum(1, true):expand_as(x) end },
  { 'slice step 2', function(x) return x:slice(2, 1, 4, 2) end },
  { 'slice negative start', function(x) return x:slice(1, -2) end },
  { 'narrow', function(x) return x:narrow(2, 1, 2) end },
  { 'select', function(x) return x:select(1, 2) end },
  { 'select negative index', function(x) return x:select(-1, -1) end },
  { 'unsqueeze', function(x) return x:unsqueeze(1) end },
  { 'squeeze dim', function(x) return x:narrow(1, 0, 1):squeeze(1) end },
  { 'squeeze all', function(x) return x:narrow(0, 0, 1):squeeze() end },
  { 'flatten', function(x) return x:flatten() end },
  { 'flatten 1..2', function(x) return x:flatten(1) end },
  { 'unflatten', function(x) return x:unflatten(2, { 2, 2 }) end },
  { 'chunk', function(x) return x:chunk(2, 2)[2] end },
  { 'chunk uneven', function(x) return x:chunk(2, 1)[2] * 2 end },
  { 'split sizes', function(x) local p = x:split({ 1, 2 }, 1) return p[1] * p[2]:sum(1, true) end },
  { 'split size', function(x) return x:split(3, 2)[2] end },
  { 'unbind', function(x) local u = x:unbind(0) return u[1] * u[2] end },
  { 'repeat', function(x) return x:narrow(1, 0, 2)['repeat'](x:narrow(1, 0, 2), 2, 1, 3) end },
  { 'repeat with new dims', function(x) local y = x:select(0, 0) return y['repeat'](y, 2, 2, 1) end },
  { 'view of a view of a slice', function(x) return x:slice(0, 1):view(3, 4):t() end },
  { 'contiguous of a transposed view', function(x) return x:transpose(1, 2):contiguous() end },
  { 'clone', function(x) return x:clone() * 2 end },
  { 'to float32 and back', function(x) return x:to(ddpm.float32):to(ddpm.float64) end, { eps = 1e-2, atol = 1e-4 } },
  { 'double() of a double', function(x) return x:double() end },
}
for _, v in ipairs(views) do
  case(v[1], v[2], function() return { U({ 2, 3, 4 }) } end, v[3])
end
-- a chain of views: gradient of an expanded, permuted, sliced input
case('chain of views', function(x) return x:permute(1, 0):slice(0, 0, nil, 2):unsqueeze(0):expand(3, 2, 2) * 1 end,
  function() return { U({ 2, 4 }) } end)

-- ---- joining and indexing -------------------------------------------------------------------------------------------
case('cat dim 0', function(a, b) return ddpm.cat({ a, b }) end, function() return { U({ 2, 3 }), U({ 1, 3 }) } end)
case('cat dim 1 of views', function(a, b) return ddpm.cat({ a:t(), b, a:t() }, 1) end,
  function() return { U({ 2, 3 }), U({ 3, 1 }) } end)
case('cat dim -1 with an empty tensor', function(a, b) return ddpm.cat({ a, b:narrow(1, 0, 0), a }, -1) end,
  function() return { U({ 2, 3 }), U({ 2, 2 }) } end)
case('stack dim 0', function(a, b) return ddpm.stack({ a, b }) end, function() return { U({ 2, 3 }), U({ 2, 3 }) } end)
case('stack dim -1', function(a, b) return ddpm.stack({ a, b, a }, -1) end, function() return { U({ 2, 3 }), U({ 2, 3 }) } end)
case('index_select with repeats', function(x) return x:index_select(0, ddpm.tensor({ 2, 0, 2, 1 }, { dtype = ddpm.int64 })) end,
  function() return { U({ 3, 4 }) } end)
case('index_select dim 1 of a view', function(x) return x:t():index_select(1, ddpm.tensor({ 1, 1 }, { dtype = ddpm.int32 })) end,
  function() return { U({ 3, 4 }) } end)
case('flip', function(x) return x:flip({ 0, 2 }) end, function() return { U({ 2, 3, 4 }) } end)
case('masked_fill', function(x) return x:masked_fill(x:gt(0), 0.5) end, function() return { NZ({ 3, 4 }) } end)

-- ---- leaves that are themselves strided or 0-d ------------------------------------------------------
case('a transposed leaf', function(x) return x:exp() * x end, function() return { U({ 4, 3 }):detach():t():requires_grad_() } end)
case('a 0-d leaf times a vector', function(s, v) return s * v end, function() return { leaf(2.5), U({ 3 }) } end)

-- ---- composites users build ---------------------------------------------------------------------------------------
case('mse-like loss', function(x, y) return ((x - y) ^ 2):mean() end, function() return { U({ 4, 3 }), U({ 4, 3 }) } end)
case('softmax by hand', function(x)
  local e = (x - x:amax(1, true)):exp()
  return e / e:sum(1, true)
end, function() return { U({ 3, 5 }) } end)
case('layer-norm by hand', function(x, w, b)
  local m = x:mean(-1, true)
  local v = x:var(-1, { correction = 0, keepdim = true })
  return (x - m) / (v + 1e-5):sqrt() * w + b
end, function() return { U({ 2, 3, 6 }), U({ 6 }), U({ 6 }) } end)
case('the same input used twice', function(x) return x * x + x:exp() * x:t():t() end, function() return { U({ 2, 3 }) } end)

describe('gradcheck', function()
  for _, c in ipairs(cases) do
    local name, fn, make, opts = c[1], c[2], c[3], c[4]
    it(name, function()
      local inputs = make()
      if ddpm.is_tensor(inputs) then inputs = { inputs } end
      assert.is_true(gradcheck(fn, inputs, opts))
    end)
  end

  it('rejects a deliberately wrong gradient', function()
    -- x * x:detach() has true derivative 2x, but the graph only sees one factor
    local x = U({ 3, 2 })
    local ok, msg = gradcheck(function(a) return a * a:detach() end, { x }, { raise = false })
    assert.is_false(ok)
    assert.matches('gradcheck failed', msg)
    assert.matches('analytic', msg)
    assert.has_error(function() gradcheck(function(a) return a * a:detach() end, { x }) end)
  end)

  it('insists on float64 inputs', function()
    local x = ddpm.randn(3, { requires_grad = true })
    assert.has_error(function() gradcheck(function(a) return a * 2 end, { x }) end)
  end)
end)
