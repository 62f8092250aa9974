-- nn/shape.lua: Flatten(start_dim=1, end_dim=-1) and Unsqueeze(dim), view-only layers.
local class = require 'ddpm.class'
local Module = require 'ddpm.nn.module'
local raise = require('ddpm.ffi').raise

local M = {}

local Flatten = class('Flatten', Module)
function Flatten:__init(start_dim, end_dim)
  Module.__init(self)
  if type(start_dim) == 'table' then start_dim, end_dim = start_dim.start_dim, start_dim.end_dim end
  self.start_dim = start_dim or 1
  self.end_dim = end_dim or -1
end
function Flatten:forward(x) return x:flatten(self.start_dim, self.end_dim) end
function Flatten:extra_repr() return string.format('start_dim=%d, end_dim=%d', self.start_dim, self.end_dim) end
M.Flatten = Flatten

-- Unsqueeze(dim): x:unsqueeze(dim), e.g. the label net's [B, 64] -> [B, 1, 64] token
local Unsqueeze = class('Unsqueeze', Module)
function Unsqueeze:__init(dim)
  Module.__init(self)
  if type(dim) == 'table' then dim = dim.dim end
  if type(dim) ~= 'number' then raise('Unsqueeze: dim must be a number, got ' .. tostring(dim)) end
  self.dim = dim
end
function Unsqueeze:forward(x) return x:unsqueeze(self.dim) end
function Unsqueeze:extra_repr() return string.format('dim=%d', self.dim) end
M.Unsqueeze = Unsqueeze

return M
