-- tensor_print_spec.lua: tostring(t) matches PyTorch's repr character for character (with
-- "ddpm." for "torch." in dtypes): float modes, widths, nan/inf, wrapping, summarisation above
-- 1000 elements, and the device/size/dtype/grad suffixes.
local ddpm = require 'ddpm'

local function S(t) return tostring(t) end
local f64 = { dtype = ddpm.float64 }

describe('printing', function()
  it('chooses fixed, integer or scientific notation like PyTorch', function()
    assert.are.equal('tensor([1., 2., 3.])', S(ddpm.tensor({ 1, 2, 3 })))
    assert.are.equal('tensor([0.5000, 1.2500])', S(ddpm.tensor({ 0.5, 1.25 })))
    assert.are.equal('tensor([-1.5000,  2.2500])', S(ddpm.tensor({ -1.5, 2.25 })))
    assert.are.equal('tensor([1.0000e-05, 1.0000e+00])', S(ddpm.tensor({ 1e-5, 1 })))
    assert.are.equal('tensor([-1.0000e-05,  1.0000e+00])', S(ddpm.tensor({ -1e-5, 1 })))
    assert.are.equal('tensor([1.0000e+10, 1.0000e+00])', S(ddpm.tensor({ 1e10, 1 })))
    assert.are.equal('tensor([ 100., 2000.])', S(ddpm.tensor({ 100, 2000 })))
    assert.are.equal('tensor([1.0000e+00, 1.0010e+03])', S(ddpm.tensor({ 1, 1001 })))
    assert.are.equal('tensor([0.1000, 2.0000])', S(ddpm.tensor({ 0.1, 2 })))
    assert.are.equal('tensor([0., 0.])', S(ddpm.zeros(2)))
    assert.are.equal('tensor([-0.])', S(ddpm.tensor({ -0.0 })))
  end)

  it('pads to the width of the nonzero finite values, never truncating nan or inf', function()
    assert.are.equal('tensor([nan, 1.])', S(ddpm.tensor({ 0 / 0, 1 })))
    assert.are.equal('tensor([nan, inf, -inf, 1.])', S(ddpm.tensor({ 0 / 0, 1 / 0, -1 / 0, 1 })))
    assert.are.equal('tensor([   inf,   -inf, 0.5000])', S(ddpm.tensor({ 1 / 0, -1 / 0, 0.5 })))
    assert.are.equal('tensor([nan, nan])', S(ddpm.tensor({ 0 / 0, 0 / 0 })))
    assert.are.equal('tensor([  0., 100.])', S(ddpm.tensor({ 0, 100 })))
  end)

  it('prints 0-d tensors, integers and booleans', function()
    assert.are.equal('tensor(3.)', S(ddpm.tensor(3)))
    assert.are.equal('tensor(-0.5000)', S(ddpm.tensor(-0.5)))
    assert.are.equal('tensor(5)', S(ddpm.tensor(5, { dtype = ddpm.int64 })))
    assert.are.equal('tensor(True)', S(ddpm.tensor(true)))
    assert.are.equal('tensor([  1, -20, 300])', S(ddpm.tensor({ 1, -20, 300 }, { dtype = ddpm.int64 })))
    assert.are.equal('tensor([ True, False])', S(ddpm.tensor({ true, false })))
    assert.are.equal('tensor(nan)', S(ddpm.tensor(0 / 0)))
  end)

  it('names non-default dtypes', function()
    assert.are.equal('tensor([1., 2.], dtype=ddpm.float64)', S(ddpm.tensor({ 1, 2 }, f64)))
    assert.are.equal('tensor([0.5000, 1.0000], dtype=ddpm.float16)', S(ddpm.tensor({ 0.5, 1 }, { dtype = ddpm.float16 })))
    assert.are.equal('tensor([1., 2.], dtype=ddpm.bfloat16)', S(ddpm.tensor({ 1, 2 }, { dtype = ddpm.bfloat16 })))
    assert.are.equal('tensor([1, 2], dtype=ddpm.int32)', S(ddpm.tensor({ 1, 2 }, { dtype = ddpm.int32 })))
    assert.are.equal('tensor([1, 2], dtype=ddpm.uint8)', S(ddpm.tensor({ 1, 2 }, { dtype = ddpm.uint8 })))
    assert.are.equal('tensor([1, 2])', S(ddpm.tensor({ 1, 2 }, { dtype = ddpm.int64 })))
  end)

  it('prints empty tensors with their size and any non-float32 dtype', function()
    assert.are.equal('tensor([])', S(ddpm.zeros(0)))
    assert.are.equal('tensor([], dtype=ddpm.int64)', S(ddpm.zeros(0, { dtype = ddpm.int64 })))
    assert.are.equal('tensor([], size=(2, 0))', S(ddpm.zeros(2, 0)))
    assert.are.equal('tensor([], size=(0, 3), dtype=ddpm.float64)', S(ddpm.zeros(0, 3, f64)))
    assert.are.equal('tensor([], dtype=ddpm.bool)', S(ddpm.zeros(0, { dtype = ddpm.bool })))
  end)

  it('nests dims with blank lines between blocks, in logical order for views', function()
    assert.are.equal('tensor([[0., 1., 2.],\n        [3., 4., 5.]])', S(ddpm.arange(6):view(2, 3):float()))
    assert.are.equal('tensor([[[0, 1],\n         [2, 3]],\n\n        [[4, 5],\n         [6, 7]]])', S(ddpm.arange(8):view(2, 2, 2)))
    assert.are.equal('tensor([[0, 3],\n        [1, 4],\n        [2, 5]])', S(ddpm.arange(6):view(2, 3):t()))
    assert.are.equal('tensor([[1, 3, 5]])', S(ddpm.arange(6):view(1, 6):slice(1, 1, nil, 2)))
  end)

  it('wraps long rows at 80 columns', function()
    assert.are.equal('tensor([ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.,  8.,  9., 10., 11., 12., 13.,\n'
      .. '        14., 15., 16., 17., 18., 19.])', S(ddpm.arange(20):float()))
  end)

  it('summarises tensors above 1000 elements', function()
    assert.are.equal('tensor([   0,    1,    2,  ..., 1997, 1998, 1999])', S(ddpm.arange(2000)))
    assert.are.equal(table.concat({
      'tensor([[   0,    1,    2,  ...,    8,    9,   10],',
      '        [  11,   12,   13,  ...,   19,   20,   21],',
      '        [  22,   23,   24,  ...,   30,   31,   32],',
      '        ...,',
      '        [1067, 1068, 1069,  ..., 1075, 1076, 1077],',
      '        [1078, 1079, 1080,  ..., 1086, 1087, 1088],',
      '        [1089, 1090, 1091,  ..., 1097, 1098, 1099]])' }, '\n'), S(ddpm.arange(1100):view(100, 11)))
    -- a dim of at most 6 is shown whole even when the tensor is summarised
    assert.are.equal(table.concat({
      'tensor([[0., 0., 0., 0.],', '        [0., 0., 0., 0.],', '        [0., 0., 0., 0.],', '        ...,',
      '        [0., 0., 0., 0.],', '        [0., 0., 0., 0.],', '        [0., 0., 0., 0.]])' }, '\n'), S(ddpm.zeros(300, 4)))
    -- only the shown values choose the format (the hidden 1e6 does not force scientific mode)
    local t = ddpm.ones(2000)
    t:select(0, 1000):fill_(1e6)
    assert.are.equal('tensor([1., 1., 1.,  ..., 1., 1., 1.])', S(t))
    -- a big tensor prints without reading all of it into Lua
    local big = ddpm.zeros(1000, 1000)
    assert.matches('^tensor%(%[%[0%., 0%., 0%.,  %.%.%., 0%., 0%., 0%.%],\n', S(big))
  end)

  it('adds grad_fn and requires_grad suffixes, wrapping them like PyTorch', function()
    local x = ddpm.tensor({ 1, 2 }, { requires_grad = true })
    assert.are.equal('tensor([1., 2.], requires_grad=True)', S(x))
    assert.are.equal('tensor([2., 4.], grad_fn=<MulBackward0>)', S(x * 2))
    assert.are.equal('tensor([2., 3.], grad_fn=<AddBackward0>)', S(x + 1))
    assert.are.equal('tensor([0., 0.], grad_fn=<SubBackward0>)', S(x - x))
    assert.are.equal('tensor(3., grad_fn=<SumBackward0>)', S(x:sum()))
    assert.are.equal('tensor([[1., 2.]], grad_fn=<ViewBackward0>)', S(x:view(1, 2)))
    assert.are.equal('tensor([1., 4.], grad_fn=<PowBackward0>)', S(x ^ 2))
    assert.are.equal('tensor([1., 2.], dtype=ddpm.float64, grad_fn=<ToCopyBackward0>)', S(x:double()))
    assert.are.equal('tensor([1., 2.])', S(x:detach()))
    local y = ddpm.tensor({ 1, 2 }, { dtype = ddpm.float64, requires_grad = true })
    assert.are.equal('tensor([1., 2.], dtype=ddpm.float64, requires_grad=True)', S(y))
    assert.are.equal('tensor([ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.,  8.,  9., 10., 11., 12., 13.],\n'
      .. '       dtype=ddpm.float64)', S(ddpm.arange(14, f64)))
    assert.are.equal('tensor([1., 2.])', S(ddpm.no_grad(function() return x * 1 end)))
  end)

  it('supports concatenation with strings', function()
    assert.are.equal('x = tensor([1., 2.])', 'x = ' .. ddpm.tensor({ 1, 2 }))
  end)
end)
