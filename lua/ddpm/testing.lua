-- testing.lua: test helpers shared by the specs: a finite-difference gradient checker (float64,
-- central differences) and tensor comparison with tolerances (≈ torch.autograd.gradcheck,
-- torch.testing.assert_close).
local ddpm = require 'ddpm'
local T = require 'ddpm.tensor'

local M = {}

local function fmt(x) return string.format('%.9g', x) end

-- a 0-d view of element k (row-major) of t, whatever t's strides
local function element(t, shape, k)
  local cell = t
  for d = #shape, 1, -1 do
    shape.idx = shape.idx or {}
    shape.idx[d] = k % shape[d]
    k = math.floor(k / shape[d])
  end
  for d = 1, #shape do cell = cell:select(0, shape.idx[d]) end
  return cell
end

-- gradcheck(fn, inputs, {eps=1e-6, atol=1e-5, rtol=1e-3, max_elements=nil, raise=true})
-- fn(...) takes the inputs (float64 leaf tensors; those with requires_grad are checked) and
-- returns a tensor.  The analytic gradient of sum(fn(...) * R), R a fixed random projection,
-- is compared with central differences of the same scalar.  Non-contiguous or broadcast cases
-- are exercised by building views inside fn.
function M.gradcheck(fn, inputs, opts)
  opts = opts or {}
  local eps, atol, rtol = opts.eps or 1e-6, opts.atol or 1e-5, opts.rtol or 1e-3
  for i, x in ipairs(inputs) do
    if T.is_tensor(x) and x.requires_grad and x.dtype ~= ddpm.float64 then
      error(string.format('gradcheck: input %d is %s; gradients are checked in float64', i, tostring(x.dtype)), 2)
    end
  end
  local gen = ddpm.Generator():manual_seed(opts.seed or 1234)
  local out = fn(unpack(inputs))
  if not T.is_tensor(out) then error('gradcheck: fn must return a tensor', 2) end
  local R = ddpm.randn(out:shape(), { dtype = out.dtype, generator = gen })
  local function scalar(...)
    return ddpm.no_grad(function(...) return (fn(...):double() * R:double()):sum():item() end, ...)
  end
  for _, x in ipairs(inputs) do
    if T.is_tensor(x) and x.requires_grad then x.grad = nil end
  end
  local loss = (out * R):sum()
  loss:backward()
  local problems = {}
  for i, x in ipairs(inputs) do
    if T.is_tensor(x) and x.requires_grad then
      local g = x.grad
      local n = x:numel()
      local analytic = g and g:contiguous():view(-1):totable_flat() or {}
      if not g then for k = 1, n do analytic[k] = 0 end end
      local shape = x:shape()
      local limit = opts.max_elements and math.min(n, opts.max_elements) or n
      local step = math.max(1, math.floor(n / limit))
      for k = 0, n - 1, step do
        local cell = ddpm.no_grad(element, x, shape, k)
        local v = cell:item()
        ddpm.no_grad(function() cell:fill_(v + eps) end)
        local fp = scalar(unpack(inputs))
        ddpm.no_grad(function() cell:fill_(v - eps) end)
        local fm = scalar(unpack(inputs))
        ddpm.no_grad(function() cell:fill_(v) end)
        local numeric = (fp - fm) / (2 * eps)
        local a = analytic[k + 1]
        if not (math.abs(a - numeric) <= atol + rtol * math.abs(numeric)) then
          problems[#problems + 1] = string.format('input %d element %d: analytic %s, numeric %s', i, k, fmt(a), fmt(numeric))
          if #problems >= 5 then break end
        end
      end
    end
  end
  if #problems > 0 then
    local msg = 'gradcheck failed:\n  ' .. table.concat(problems, '\n  ')
    if opts.raise == false then return false, msg end
    error(msg, 2)
  end
  return true
end

-- assert_close(actual, expected, {rtol=1.3e-6, atol=1e-5, msg=}): elementwise
-- |a - e| <= atol + rtol * |e|, with the worst element named in the error.
function M.assert_close(actual, expected, opts)
  opts = opts or {}
  local rtol, atol = opts.rtol or 1.3e-6, opts.atol or 1e-5
  if not T.is_tensor(expected) then expected = ddpm.tensor(expected, { dtype = ddpm.float64 }) end
  local sa, se = actual:shape(), expected:shape()
  if actual:numel() ~= expected:numel() then
    error(string.format('%sshape mismatch: %s vs %s', opts.msg and (opts.msg .. ': ') or '',
      table.concat(sa, 'x'), table.concat(se, 'x')), 2)
  end
  local a = actual:double():contiguous():view(-1):totable_flat()
  local e = expected:double():contiguous():view(-1):totable_flat()
  local worst, wi, nbad = -1, 0, 0
  for k = 1, #a do
    local d = math.abs(a[k] - e[k])
    local tol = atol + rtol * math.abs(e[k])
    if not (d <= tol) then
      nbad = nbad + 1
      if d ~= d or d - tol > worst then worst, wi = (d ~= d) and math.huge or d - tol, k end
    end
  end
  if nbad > 0 then
    error(string.format('%s%d of %d elements differ; worst at flat index %d: actual %s, expected %s (atol %g, rtol %g)',
      opts.msg and (opts.msg .. ': ') or '', nbad, #a, wi - 1, fmt(a[wi]), fmt(e[wi]), atol, rtol), 2)
  end
  return true
end

-- max |a - e| and max |e|, for reporting parity tolerances
function M.max_abs_diff(a, e)
  return (a:double() - e:double()):abs():amax():item(), e:double():abs():amax():item()
end

return M
