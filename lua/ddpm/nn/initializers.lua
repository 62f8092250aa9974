-- nn/initializers.lua: ddpm.nn.init (≈ torch.nn.init): in-place initialisers drawing from a
-- generator ({generator=g}, else the default generator), under no_grad like PyTorch's.
local ddpm = require 'ddpm'
local T = require 'ddpm.tensor'
local F = require 'ddpm.ffi'
local raise = F.raise
local C = ddpm.C

local init = {}

local function gen(o) return ddpm._gen_handle(o) end
local function need(t, op)
  if not T.is_tensor(t) then raise(string.format('nn.init.%s: tensor must be a tensor, got %s', op, type(t))) end
end
-- split (t, positional..., opts) where opts is a trailing table
local function opts_of(...)
  local n = select('#', ...)
  local last = select(n, ...)
  if n > 0 and type(last) == 'table' and not T.is_tensor(last) then return last, n - 1 end
  return nil, n
end

-- in-place fills refuse leaves that require grad while grad mode is on, so run them without it
local function nograd(fn)
  local prev = C.ddpm_grad_enabled()
  C.ddpm_set_grad_enabled(0)
  local ok, err = pcall(fn)
  C.ddpm_set_grad_enabled(prev)
  if not ok then error(err, 0) end
end

-- fan_in, fan_out of a weight [out, in, k...] (PyTorch's _calculate_fan_in_and_fan_out)
function init._calculate_fan_in_and_fan_out(t)
  local s = t:shape()
  if #s < 2 then
    raise('nn.init: fan in and fan out can not be computed for a tensor with fewer than 2 dimensions')
  end
  local rf = 1
  for i = 3, #s do rf = rf * s[i] end
  return s[2] * rf, s[1] * rf
end

function init.calculate_gain(nonlinearity, param)
  nonlinearity = nonlinearity or 'leaky_relu'
  local linear = { linear = 1, conv1d = 1, conv2d = 1, conv3d = 1, conv_transpose1d = 1, conv_transpose2d = 1,
    conv_transpose3d = 1, sigmoid = 1 }
  if linear[nonlinearity] then return 1 end
  if nonlinearity == 'tanh' then return 5 / 3 end
  if nonlinearity == 'relu' then return math.sqrt(2) end
  if nonlinearity == 'selu' then return 3 / 4 end
  if nonlinearity == 'leaky_relu' then
    local slope = param == nil and 0.01 or param
    return math.sqrt(2 / (1 + slope * slope))
  end
  raise("nn.init.calculate_gain: unsupported nonlinearity '" .. tostring(nonlinearity) ..
    "' (expected linear, conv2d, sigmoid, tanh, relu, leaky_relu or selu)")
end

-- uniform_(t, a=0, b=1, {generator=})
function init.uniform_(t, ...)
  need(t, 'uniform_')
  local o, n = opts_of(...)
  local a, b = select(1, ...), select(2, ...)
  if n < 1 then a = o and o.a or 0 end
  if n < 2 then b = o and o.b or 1 end
  nograd(function() F.check(C.ddpm_uniform_(t, a, b, gen(o))) end)
  return t
end

-- normal_(t, mean=0, std=1, {generator=})
function init.normal_(t, ...)
  need(t, 'normal_')
  local o, n = opts_of(...)
  local mean, std = select(1, ...), select(2, ...)
  if n < 1 then mean = o and o.mean or 0 end
  if n < 2 then std = o and o.std or 1 end
  nograd(function() F.check(C.ddpm_normal_(t, mean, std, gen(o))) end)
  return t
end

function init.constant_(t, val)
  need(t, 'constant_')
  nograd(function() F.check(C.ddpm_fill_(t, val)) end)
  return t
end
function init.zeros_(t) return init.constant_(t, 0) end
function init.ones_(t) return init.constant_(t, 1) end

local function kaiming_bound(t, o, a, mode, nonlinearity)
  local fan_in, fan_out = init._calculate_fan_in_and_fan_out(t)
  mode = mode or 'fan_in'
  if mode ~= 'fan_in' and mode ~= 'fan_out' then
    raise("nn.init.kaiming: mode must be 'fan_in' or 'fan_out', got " .. tostring(mode))
  end
  local fan = mode == 'fan_in' and fan_in or fan_out
  local gain = init.calculate_gain(nonlinearity or 'leaky_relu', a or 0)
  return gain / math.sqrt(fan)
end

-- kaiming_uniform_(t, a=0, mode='fan_in', nonlinearity='leaky_relu', {generator=})
-- (positional as PyTorch, or all in the options table)
function init.kaiming_uniform_(t, ...)
  need(t, 'kaiming_uniform_')
  local o, n = opts_of(...)
  local a, mode, nl = ...
  if n < 1 then a = o and o.a end
  if n < 2 then mode = o and o.mode end
  if n < 3 then nl = o and o.nonlinearity end
  local std = kaiming_bound(t, o, a, mode, nl)
  local bound = math.sqrt(3) * std
  return init.uniform_(t, -bound, bound, o or {})
end
function init.kaiming_normal_(t, ...)
  need(t, 'kaiming_normal_')
  local o, n = opts_of(...)
  local a, mode, nl = ...
  if n < 1 then a = o and o.a end
  if n < 2 then mode = o and o.mode end
  if n < 3 then nl = o and o.nonlinearity end
  return init.normal_(t, 0, kaiming_bound(t, o, a, mode, nl), o or {})
end

-- xavier_uniform_(t, gain=1, {generator=})
function init.xavier_uniform_(t, ...)
  need(t, 'xavier_uniform_')
  local o, n = opts_of(...)
  local gain = n >= 1 and select(1, ...) or (o and o.gain) or 1
  local fan_in, fan_out = init._calculate_fan_in_and_fan_out(t)
  local a = gain * math.sqrt(6 / (fan_in + fan_out))
  return init.uniform_(t, -a, a, o or {})
end
function init.xavier_normal_(t, ...)
  need(t, 'xavier_normal_')
  local o, n = opts_of(...)
  local gain = n >= 1 and select(1, ...) or (o and o.gain) or 1
  local fan_in, fan_out = init._calculate_fan_in_and_fan_out(t)
  return init.normal_(t, 0, gain * math.sqrt(2 / (fan_in + fan_out)), o or {})
end

return init
