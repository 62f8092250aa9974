-- nn/activation.lua: parameter-free activation layers (GELU, SiLU, ReLU, Sigmoid, Tanh, Mish).
local class = require 'ddpm.class'
local Module = require 'ddpm.nn.module'
local F = require 'ddpm.nn.functional'
local raise = require('ddpm.ffi').raise

local M = {}

-- GELU(approximate='none' | 'tanh'), also GELU{approximate=}
local GELU = class('GELU', Module)
function GELU:__init(approximate)
  Module.__init(self)
  if type(approximate) == 'table' then approximate = approximate.approximate end
  approximate = approximate or 'none'
  if approximate ~= 'none' and approximate ~= 'tanh' then
    raise("GELU: approximate must be 'none' or 'tanh', got " .. tostring(approximate))
  end
  self.approximate = approximate
end
function GELU:forward(x) return F.gelu(x, { approximate = self.approximate }) end
function GELU:extra_repr() return "approximate='" .. self.approximate .. "'" end
M.GELU = GELU

local function simple(name, fn)
  local cls = class(name, Module)
  function cls:__init() Module.__init(self) end
  cls.forward = function(_, x) return fn(x) end
  M[name] = cls
  return cls
end
simple('SiLU', function(x) return F.silu(x) end)
simple('ReLU', function(x) return x:relu() end)
simple('Sigmoid', function(x) return x:sigmoid() end)
simple('Tanh', function(x) return x:tanh() end)
-- Mish: x * tanh(softplus(x)); softplus composed as log1p(exp(-|x|)) + max(x, 0) for range
simple('Mish', function(x)
  local sp = (x:abs():neg():exp() + 1):log() + x:relu()
  return x * sp:tanh()
end)

return M
