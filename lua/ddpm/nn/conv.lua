-- nn/conv.lua: Conv2d (NCHW, weight [out, in/groups, kh, kw]) with PyTorch's initialisation.
local class = require 'ddpm.class'
local Module = require 'ddpm.nn.module'
local init = require 'ddpm.nn.initializers'
local U = require 'ddpm.nn.common'
local F = require 'ddpm.nn.functional'
local R = require 'ddpm.nn.pyrepr'
local raise = require('ddpm.ffi').raise

local M = {}

-- Conv2d(in, out, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=true,
--        padding_mode='zeros', {dtype=, device=, generator=}); sizes are ints or {h, w}
local Conv2d = class('Conv2d', Module)
function Conv2d:__init(...)
  Module.__init(self)
  local a = U.args('Conv2d',
    { 'in_channels', 'out_channels', 'kernel_size', 'stride', 'padding', 'dilation', 'groups', 'bias', 'padding_mode' },
    { stride = 1, padding = 0, dilation = 1, groups = 1, bias = true, padding_mode = 'zeros' }, ...)
  self.in_channels = U.need_int('Conv2d', 'in_channels', a.in_channels, 1)
  self.out_channels = U.need_int('Conv2d', 'out_channels', a.out_channels, 1)
  self.kernel_size = U.pair('Conv2d', 'kernel_size', a.kernel_size)
  self.stride = U.pair('Conv2d', 'stride', a.stride)
  if type(a.padding) == 'string' then raise("Conv2d: string padding ('same', 'valid') is not supported; give numbers") end
  self.padding = U.pair('Conv2d', 'padding', a.padding)
  self.dilation = U.pair('Conv2d', 'dilation', a.dilation)
  self.groups = U.need_int('Conv2d', 'groups', a.groups, 1)
  if a.padding_mode ~= 'zeros' then raise("Conv2d: padding_mode '" .. tostring(a.padding_mode) .. "' is not supported (only 'zeros')") end
  self.padding_mode = a.padding_mode
  if self.in_channels % self.groups ~= 0 or self.out_channels % self.groups ~= 0 then
    raise(string.format('Conv2d: in_channels (%d) and out_channels (%d) must be divisible by groups (%d)',
      self.in_channels, self.out_channels, self.groups))
  end
  self:register_parameter('weight', U.empty(a, self.out_channels, self.in_channels / self.groups,
    self.kernel_size[1], self.kernel_size[2]))
  self:register_parameter('bias', a.bias and U.empty(a, self.out_channels) or nil)
  self:reset_parameters(a.generator)
end
function Conv2d:reset_parameters(generator)
  local o = { generator = generator }
  init.kaiming_uniform_(self.weight, math.sqrt(5), o)
  if self.bias ~= nil then
    local fan_in = init._calculate_fan_in_and_fan_out(self.weight)
    local bound = fan_in > 0 and 1 / math.sqrt(fan_in) or 0
    init.uniform_(self.bias, -bound, bound, o)
  end
end
local function arg(p) return p[1] == p[2] and p[1] or p end
function Conv2d:forward(x)
  return F.conv2d(x, self.weight, self.bias, arg(self.stride), arg(self.padding), arg(self.dilation), self.groups)
end
function Conv2d:extra_repr()
  local s = string.format('%d, %d, kernel_size=%s, stride=%s', self.in_channels, self.out_channels,
    R.tuple(self.kernel_size), R.tuple(self.stride))
  if self.padding[1] ~= 0 or self.padding[2] ~= 0 then s = s .. ', padding=' .. R.tuple(self.padding) end
  if self.dilation[1] ~= 1 or self.dilation[2] ~= 1 then s = s .. ', dilation=' .. R.tuple(self.dilation) end
  if self.groups ~= 1 then s = s .. ', groups=' .. self.groups end
  if self.bias == nil then s = s .. ', bias=False' end
  return s
end
M.Conv2d = Conv2d

return M
