-- tensor_errors_spec.lua: bad input from Lua (nil or strings where tensors or numbers belong,
-- bad dims, shape mismatches, wrong dtypes) raises an error that names the op, says what was
-- expected, and points at the caller's line.
local ddpm = require 'ddpm'

-- the error of f as (file, line, message)
local function error_of(f)
  local ok, err = pcall(f)
  assert.is_false(ok, 'expected an error')
  err = tostring(err)
  local file, line, msg = err:match('^(.-):(%d+): (.*)$')
  assert.is_truthy(file, 'no position in the error: ' .. err)
  return file, tonumber(line), msg, err
end
local here = function() return debug.getinfo(2, 'l').currentline end

local x
before_each(function() x = ddpm.arange(6):float():view(2, 3) end)

-- each case: the expected message (a Lua pattern) and a function whose first statement makes
-- the bad call on a line of its own; the error must point at exactly that line
local cases = {
  { 'add: other must be a tensor, got nil', function() local r = x + nil return r end },
  { 'add: other must be a tensor, got string', function() local r = x + 'a' return r end },
  { 'mul: other must be a tensor, got table', function() local r = x * {} return r end },
  { 'sub: input must be a tensor, got string', function() local r = ddpm.sub('a', x) return r end },
  { 'exp: input must be a tensor, got nil', function() local r = ddpm.exp(nil) return r end },
  { 'exp: input must be a tensor, got string', function() local r = ddpm.exp('x') return r end },
  { 'sum: input must be a tensor, got number', function() local r = ddpm.sum(3) return r end },
  { 'sum: dim 5 out of range for a tensor with 2 dims %(expected %-2%.%.1%)',
    function() local r = x:sum(5) return r end },
  { 'sum: dim must be a number or a table of numbers, got string', function() local r = x:sum('a') return r end },
  { 'mean: dim %-3 out of range', function() local r = x:mean({ 0, -3 }) return r end },
  { 'sum: dim 1 appears twice', function() local r = x:sum({ 1, -1 }) return r end },
  { 'view: shape %[5%] is invalid for input of size 6', function() local r = x:view(5) return r end },
  { 'view: size 1 is 2%.5, expected an integer', function() local r = x:view(2.5, 2) return r end },
  { 'reshape: size 1 is nil, expected an integer', function() local r = x:reshape(nil) return r end },
  { 'zeros: size 1 is string, expected an integer', function() local r = ddpm.zeros('a') return r end },
  { 'zeros: 9 dims requested, tensors have at most 8',
    function() local r = ddpm.zeros(1, 1, 1, 1, 1, 1, 1, 1, 1) return r end },
  { 'empty: negative size %-2', function() local r = ddpm.empty(3, -2) return r end },
  { 'matmul: shapes %[2, 3%] and %[4, 2%] cannot be multiplied',
    function() local r = x:matmul(ddpm.ones(4, 2)) return r end },
  { 'matmul: other must be a tensor, got number', function() local r = x:matmul(5) return r end },
  { 'matmul: expected both operands to have the same dtype',
    function() local r = x:matmul(ddpm.ones(3, { dtype = ddpm.float64 })) return r end },
  { 'add: shapes %[2%] and %[3%] do not broadcast', function() local r = ddpm.ones(2) + ddpm.ones(3) return r end },
  { 'maximum: shapes %[2, 3%] and %[2%] do not broadcast',
    function() local r = x:maximum(ddpm.ones(2)) return r end },
  { 'transpose: dim 5 out of range', function() local r = x:transpose(0, 5) return r end },
  { 'transpose: dim1 must be a number, got nil', function() local r = x:transpose(0) return r end },
  { 'select: index 9 is out of bounds for dim 0 with size 2', function() local r = x:select(0, 9) return r end },
  { 'narrow: start 2 with length 5 exceeds dim 1 of size 3', function() local r = x:narrow(1, 2, 5) return r end },
  { 'permute: 1 dims given', function() local r = x:permute(0) return r end },
  { 'unsqueeze: dim 5 out of range', function() local r = x:unsqueeze(5) return r end },
  { 'expand: float32%[2, 3%] on cpu cannot be expanded to %[1, 3%]', function() local r = x:expand(1, 3) return r end },
  { 'chunk: chunks must be a number, got string', function() local r = x:chunk('a') return r end },
  { 'flatten: dim 4 out of range', function() local r = x:flatten(4) return r end },
  { 'index_select: index must be a tensor, got table', function() local r = x:index_select(0, { 0 }) return r end },
  { 'index_select: index 5 is out of range for a dim of size 2',
    function() local r = x:index_select(0, ddpm.tensor({ 5 }, { dtype = ddpm.int64 })) return r end },
  { 'index_select: index must be int64 or int32', function() local r = x:index_select(0, ddpm.tensor({ 0 })) return r end },
  { 'cat: element 2 is string, expected a tensor', function() local r = ddpm.cat({ x, 'a' }) return r end },
  { 'cat: expected a table of tensors, got a tensor', function() local r = ddpm.cat(x) return r end },
  { 'cat: sizes must match except in dim 0', function() local r = ddpm.cat({ x, ddpm.ones(1, 2) }) return r end },
  { 'stack: expects each tensor to be equal size', function() local r = ddpm.stack({ x, ddpm.ones(3) }) return r end },
  { "to: expected a device %('cpu', 'cuda' or 'cuda:N'%), got cuda:x", function() local r = x:to('cuda:x') return r end },
  { 'to: expected a dtype, a device, a tensor or {dtype=, device=}, got number', function() local r = x:to(5) return r end },
  { 'tensor: expected a sequence of length 2 at dim 1', function() local r = ddpm.tensor({ { 1, 2 }, { 3 } }) return r end },
  { 'item: a tensor with 6 elements', function() local r = x:item() return r end },
  { 'fill_: value must be a number, got string', function() local r = x:fill_('a') return r end },
  { 'clamp: min must be a number, got string', function() local r = x:clamp('a') return r end },
  { 'clamp: min 2 is greater than max 1', function() local r = x:clamp(2, 1) return r end },
  { 'max: dim must be a number, got string', function() local r = x:max('a') return r end },
  { 'where: condition must be a bool tensor', function() local r = ddpm.where(x, x, x) return r end },
  { 'arange: end must be a number, got string', function() local r = ddpm.arange('a') return r end },
  { 'arange: step 1 does not go from 5 towards 0', function() local r = ddpm.arange(5, 0) return r end },
  { 'var: correction must be a number, got string', function() local r = x:var(0, { correction = 'a' }) return r end },
  { 'normal_: expected a floating point tensor, got int64%[2%]', function() local r = ddpm.randn(2, { dtype = ddpm.int64 }) return r end },
  { 'manual_seed: seed must be a non%-negative integer', function() local r = ddpm.manual_seed(-1) return r end },
  { 'no_grad: expected a function to run, got number', function() local r = ddpm.no_grad(5) return r end },
  { "tensor: cannot set field 'foo'", function() x.foo = 1 return nil end },
  { 'backward: float32%[2, 3%] on cpu does not require grad', function() x:backward() return nil end },
  { 'requires_grad_: only floating point tensors can require gradients',
    function() local r = ddpm.arange(3):requires_grad_() return r end },
  { 'div_: true division into an integer tensor', function() local r = ddpm.arange(3):div_(ddpm.arange(3)) return r end },
  { 'tensor: < and <= compare elementwise in PyTorch; write x:lt%(y%)', function() local r = x < x return r end },
  { 'grad: grad must be a tensor, got string', function() x.grad = 'a' return nil end },
}

describe('errors from Lua', function()
  for _, c in ipairs(cases) do
    local pattern, f = c[1], c[2]
    it(pattern:gsub('%%', ''), function()
      local file, line, msg, err = error_of(f)
      assert.matches('tensor_errors_spec%.lua$', file, nil, nil, 'the error does not point at the caller: ' .. err)
      local info = debug.getinfo(f, 'S')
      assert.is_true(line >= info.linedefined and line <= info.lastlinedefined,
        string.format('error at line %d, the call is on line %d: %s', line, info.linedefined, err))
      assert.matches(pattern, msg)
    end)
  end

  it('points at the caller, not at the library, when the op is reached through a library function', function()
    local line = here() + 1
    local ok, err = pcall(function() local r = ddpm.testing.assert_close(ddpm.ones(2), ddpm.ones(3)) return r end)
    assert.is_false(ok)
    assert.matches('tensor_errors_spec%.lua:' .. line .. ':', tostring(err))
  end)

  it('restores grad mode when the function given to no_grad fails', function()
    assert.is_true(ddpm.is_grad_enabled())
    local ok, err = pcall(ddpm.no_grad, function() error('boom') end)
    assert.is_false(ok)
    assert.matches('boom', err)
    assert.is_true(ddpm.is_grad_enabled())
    ddpm.set_grad_enabled(false)
    ok = pcall(ddpm.enable_grad, function() error('boom') end)
    assert.is_false(ok)
    assert.is_false(ddpm.is_grad_enabled())
    ddpm.set_grad_enabled(true)
  end)
end)
