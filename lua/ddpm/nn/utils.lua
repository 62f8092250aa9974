-- nn/utils.lua: ddpm.nn.utils (≈ torch.nn.utils): gradient clipping over a parameter list, with
-- the norm and the scaling each done by one fused C call.
local ffi = require 'ffi'
local F = require 'ddpm.ffi'
local T = require 'ddpm.tensor'
local C, raise = F.C, F.raise
local is_tensor = T.is_tensor

local utils = {}

-- PyTorch computes the clip coefficient on float32 tensors: round like it
local fbuf = ffi.new('float[1]')
local function f32(x)
  fbuf[0] = x
  return fbuf[0]
end

local function grads_of(parameters, op)
  if is_tensor(parameters) then parameters = { parameters } end
  if type(parameters) == 'table' and type(parameters.parameters) == 'function' and not is_tensor(parameters[1]) then
    parameters = parameters:parameters()
  end
  if type(parameters) ~= 'table' then
    raise(string.format('%s: parameters must be a tensor or a list of tensors, got %s', op, type(parameters)))
  end
  local gs = {}
  for i, p in ipairs(parameters) do
    if not is_tensor(p) then raise(string.format('%s: parameter %d is %s, expected a tensor', op, i, type(p))) end
    local g = p.grad
    if g ~= nil then gs[#gs + 1] = g end
  end
  return gs
end

local function norm_type_of(v, op)
  if v == nil then return 2 end
  if v == 'inf' or v == 'Inf' then return math.huge end
  if type(v) ~= 'number' or v ~= v or v < 0 then
    raise(string.format("%s: norm_type must be a non-negative number or 'inf', got %s", op, tostring(v)))
  end
  return v
end

-- clip_grad_norm_(parameters, max_norm, {norm_type=2, error_if_nonfinite=false}): scale the
-- gradients in place so their total norm is at most max_norm; returns the total norm (a 0-d
-- tensor, measured before clipping), as torch.nn.utils.clip_grad_norm_.
function utils.clip_grad_norm_(parameters, max_norm, opts)
  local op = 'clip_grad_norm_'
  if type(opts) == 'number' then opts = { norm_type = opts } end
  opts = opts or {}
  if type(max_norm) ~= 'number' or max_norm ~= max_norm then
    raise(string.format('%s: max_norm must be a number, got %s', op, tostring(max_norm)))
  end
  local p = norm_type_of(opts.norm_type, op)
  local gs = grads_of(parameters, op)
  local ddpm = require 'ddpm'
  if #gs == 0 then return ddpm.tensor(0.0) end
  local n = #gs
  local arr = ffi.new('ddpm_tensor*[?]', n)
  for i, g in ipairs(gs) do arr[i - 1] = g end
  local total = T.call3(C.ddpm_total_norm, n, arr, p)
  local tv = total:item()
  if opts.error_if_nonfinite and (tv ~= tv or tv == math.huge) then
    raise(string.format('%s: the total norm of order %s for gradients from `parameters` is non-finite, so it cannot be '
      .. 'clipped. To disable this error and scale the gradients by the non-finite norm anyway, set '
      .. 'error_if_nonfinite=false', op, tostring(p)))
  end
  -- the coefficient is a tensor op in the gradients' dtype in PyTorch
  local coef
  if gs[1].dtype == ddpm.float32 then coef = f32(f32(max_norm) / f32(tv + f32(1e-6)))
  else coef = max_norm / (tv + 1e-6) end
  if coef > 1.0 then coef = 1.0 end
  -- PyTorch multiplies even by 1.0; that is exact, so it is skipped here
  if coef ~= 1.0 then
    local st = C.ddpm_foreach_mul_scalar_(n, arr, coef)
    if st ~= 0 then raise(F.last_error()) end
  end
  return total
end

-- clip_grad_value_(parameters, clip_value): clamp every gradient to [-clip_value, clip_value]
function utils.clip_grad_value_(parameters, clip_value)
  local op = 'clip_grad_value_'
  if type(clip_value) ~= 'number' then raise(op .. ': clip_value must be a number, got ' .. type(clip_value)) end
  for _, g in ipairs(grads_of(parameters, op)) do g:clamp_(-clip_value, clip_value) end
end

return utils
