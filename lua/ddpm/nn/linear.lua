-- nn/linear.lua: Linear (y = x W^T + b) and Identity, initialised as PyTorch's.
local class = require 'ddpm.class'
local Module = require 'ddpm.nn.module'
local init = require 'ddpm.nn.initializers'
local U = require 'ddpm.nn.common'
local F = require 'ddpm.nn.functional'
local R = require 'ddpm.nn.pyrepr'

local M = {}

-- Linear(in_features, out_features, bias=true, {dtype=, device=, generator=})
local Linear = class('Linear', Module)
function Linear:__init(...)
  Module.__init(self)
  local a = U.args('Linear', { 'in_features', 'out_features', 'bias' }, { bias = true }, ...)
  self.in_features = U.need_int('Linear', 'in_features', a.in_features)
  self.out_features = U.need_int('Linear', 'out_features', a.out_features)
  self:register_parameter('weight', U.empty(a, a.out_features, a.in_features))
  self:register_parameter('bias', a.bias and U.empty(a, a.out_features) or nil)
  self:reset_parameters(a.generator)
end
-- kaiming_uniform(a=sqrt(5)) for the weight and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias
function Linear:reset_parameters(generator)
  local o = { generator = generator }
  init.kaiming_uniform_(self.weight, math.sqrt(5), o)
  if self.bias ~= nil then
    local fan_in = init._calculate_fan_in_and_fan_out(self.weight)
    local bound = fan_in > 0 and 1 / math.sqrt(fan_in) or 0
    init.uniform_(self.bias, -bound, bound, o)
  end
end
function Linear:forward(x) return F.linear(x, self.weight, self.bias) end
function Linear:extra_repr()
  return string.format('in_features=%d, out_features=%d, bias=%s', self.in_features, self.out_features,
    R.bool(self.bias ~= nil))
end
M.Linear = Linear

-- Identity(...): returns its input; arguments are ignored as PyTorch does
local Identity = class('Identity', Module)
function Identity:__init() Module.__init(self) end
function Identity:forward(x) return x end
M.Identity = Identity

return M
