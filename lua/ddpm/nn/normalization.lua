-- nn/normalization.lua: GroupNorm and LayerNorm (affine weight 1, bias 0 at init).
local class = require 'ddpm.class'
local Module = require 'ddpm.nn.module'
local init = require 'ddpm.nn.initializers'
local U = require 'ddpm.nn.common'
local F = require 'ddpm.nn.functional'
local R = require 'ddpm.nn.pyrepr'
local raise = require('ddpm.ffi').raise

local M = {}

-- GroupNorm(num_groups, num_channels, eps=1e-5, affine=true, {dtype=, device=})
local GroupNorm = class('GroupNorm', Module)
function GroupNorm:__init(...)
  Module.__init(self)
  local a = U.args('GroupNorm', { 'num_groups', 'num_channels', 'eps', 'affine' }, { eps = 1e-5, affine = true }, ...)
  self.num_groups = U.need_int('GroupNorm', 'num_groups', a.num_groups, 1)
  self.num_channels = U.need_int('GroupNorm', 'num_channels', a.num_channels, 1)
  if self.num_channels % self.num_groups ~= 0 then
    raise(string.format('GroupNorm: num_channels (%d) must be divisible by num_groups (%d)', self.num_channels,
      self.num_groups))
  end
  self.eps = a.eps
  self.affine = a.affine and true or false
  if self.affine then
    self:register_parameter('weight', init.ones_(U.empty(a, self.num_channels)))
    self:register_parameter('bias', init.zeros_(U.empty(a, self.num_channels)))
  else
    self:register_parameter('weight', nil)
    self:register_parameter('bias', nil)
  end
end
function GroupNorm:forward(x) return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps) end
function GroupNorm:extra_repr()
  return string.format('%d, %d, eps=%s, affine=%s', self.num_groups, self.num_channels, R.float(self.eps),
    R.bool(self.affine))
end
M.GroupNorm = GroupNorm

-- LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=true, bias=true, {dtype=, device=})
local LayerNorm = class('LayerNorm', Module)
function LayerNorm:__init(...)
  Module.__init(self)
  local a = U.args('LayerNorm', { 'normalized_shape', 'eps', 'elementwise_affine', 'bias' },
    { eps = 1e-5, elementwise_affine = true, bias = true }, ...)
  local ns = a.normalized_shape
  if type(ns) == 'number' then ns = { ns } end
  if type(ns) ~= 'table' or #ns == 0 then
    raise('LayerNorm: normalized_shape must be a number or a table of numbers, got ' .. tostring(a.normalized_shape))
  end
  self.normalized_shape = ns
  self.eps = a.eps
  self.elementwise_affine = a.elementwise_affine and true or false
  if self.elementwise_affine then
    self:register_parameter('weight', init.ones_(U.empty(a, ns)))
    self:register_parameter('bias', a.bias and init.zeros_(U.empty(a, ns)) or nil)
  else
    self:register_parameter('weight', nil)
    self:register_parameter('bias', nil)
  end
end
function LayerNorm:forward(x) return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps) end
function LayerNorm:extra_repr()
  return string.format('%s, eps=%s, elementwise_affine=%s', R.tuple(self.normalized_shape), R.float(self.eps),
    R.bool(self.elementwise_affine))
end
M.LayerNorm = LayerNorm

return M
