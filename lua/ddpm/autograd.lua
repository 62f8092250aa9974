-- autograd.lua: ddpm.autograd (≈ torch.autograd): grad() returns gradients without touching
-- .grad, backward() runs one pass from several roots.  The graph itself lives in C.
local F = require 'ddpm.ffi'
local T = require 'ddpm.tensor'
local ffi, C = F.ffi, F.C
local raise, is_tensor = F.raise, T.is_tensor

local M = {}
local list_t = ffi.typeof('ddpm_tensor*[?]')

-- a tensor or a list of tensors as (count, C array); `holes` allows nil entries (n from opts)
local function as_array(x, what, op, n, holes)
  if is_tensor(x) then x = { x } end
  if type(x) ~= 'table' then
    raise(string.format('%s: %s must be a tensor or a list of tensors, got %s', op, what, x == nil and 'nil' or type(x)))
  end
  n = n or #x
  if n == 0 then raise(string.format('%s: %s is an empty list', op, what)) end
  local arr = list_t(n)
  for i = 1, n do
    local t = x[i]
    if t == nil and holes then
      arr[i - 1] = nil
    elseif not is_tensor(t) then
      raise(string.format('%s: %s[%d] is %s, expected a tensor', op, what, i, t == nil and 'nil' or type(t)))
    else
      arr[i - 1] = t
    end
  end
  return n, arr
end

-- grads = ddpm.autograd.grad(outputs, inputs, {grad_outputs=, retain_graph=false,
--                            create_graph=false, allow_unused=false})
-- outputs and inputs are tensors or lists; the result is a list with one gradient per input
-- (nil for an unused input when allow_unused).
function M.grad(outputs, inputs, opts)
  opts = opts or {}
  if type(opts) ~= 'table' then raise('autograd.grad: options must be a table, got ' .. type(opts)) end
  if opts.create_graph then
    raise('autograd.grad: create_graph=true is not supported (ddpm does not build graphs of gradients, so '
      .. 'higher-order derivatives are not available)')
  end
  local nout, outs = as_array(outputs, 'outputs', 'autograd.grad')
  local nin, ins = as_array(inputs, 'inputs', 'autograd.grad')
  local gouts = nil
  if opts.grad_outputs ~= nil then
    local go = opts.grad_outputs
    if is_tensor(go) then go = { go } end
    local n
    n, gouts = as_array(go, 'grad_outputs', 'autograd.grad', nout, true)
    if type(opts.grad_outputs) == 'table' and #opts.grad_outputs > nout then
      raise(string.format('autograd.grad: %d grad_outputs for %d outputs', #opts.grad_outputs, nout))
    end
  end
  local grads = list_t(nin)
  local st = C.ddpm_autograd_grad(nout, outs, gouts, nin, ins, grads, opts.retain_graph and 1 or 0,
    opts.allow_unused and 1 or 0)
  if st ~= 0 then raise(F.last_error()) end
  local res = { n = nin }
  for i = 1, nin do
    if grads[i - 1] ~= nil then res[i] = T.wrap(grads[i - 1]) end
  end
  return res
end

-- ddpm.autograd.backward(tensors, grad_tensors, {retain_graph=}): t:backward() for several
-- roots in one pass; gradients accumulate into the leaves' .grad.
function M.backward(tensors, grad_tensors, opts)
  if type(grad_tensors) == 'table' and not is_tensor(grad_tensors) and grad_tensors[1] == nil
    and next(grad_tensors) ~= nil and opts == nil then
    grad_tensors, opts = nil, grad_tensors
  end
  opts = opts or {}
  if opts.create_graph then raise('autograd.backward: create_graph=true is not supported') end
  local n, roots = as_array(tensors, 'tensors', 'autograd.backward')
  local grads = nil
  if grad_tensors ~= nil then
    if is_tensor(grad_tensors) then grad_tensors = { grad_tensors } end
    local _
    _, grads = as_array(grad_tensors, 'grad_tensors', 'autograd.backward', n, true)
  end
  local st = C.ddpm_autograd_backward(n, roots, grads, opts.retain_graph and 1 or 0)
  if st ~= 0 then raise(F.last_error()) end
end

return M
