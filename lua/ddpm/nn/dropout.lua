-- nn/dropout.lua: Dropout(p): zeroes elements with probability p in training mode and scales
-- the rest by 1/(1-p); the identity (the same tensor) in eval mode or with p = 0.
local class = require 'ddpm.class'
local Module = require 'ddpm.nn.module'
local F = require 'ddpm.nn.functional'
local R = require 'ddpm.nn.pyrepr'
local raise = require('ddpm.ffi').raise

local M = {}

local Dropout = class('Dropout', Module)
function Dropout:__init(p, inplace)
  Module.__init(self)
  if type(p) == 'table' then p, inplace = p.p, p.inplace end
  p = p == nil and 0.5 or p
  if type(p) ~= 'number' or p < 0 or p > 1 then
    raise('Dropout: dropout probability has to be between 0 and 1, but got ' .. tostring(p))
  end
  self.p = p
  self.inplace = inplace and true or false
end
function Dropout:forward(x)
  if not self.training or self.p == 0 then return x end
  return F.dropout(x, self.p, true)
end
function Dropout:extra_repr() return string.format('p=%s, inplace=%s', R.float(self.p), R.bool(self.inplace)) end
M.Dropout = Dropout

return M
