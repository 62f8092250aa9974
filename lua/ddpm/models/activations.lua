-- models/activations.lua: diffusers' projection activations GELU (proj + gelu), GEGLU
-- (proj to 2x, value * gelu(gate)) and ApproximateGELU (x * sigmoid(1.702 x)).
local class = require 'ddpm.class'
local nn = require 'ddpm.nn'
local Fo = require 'ddpm.nn.fops'
local U = require 'ddpm.models.util'

local M = {}

-- GELU(dim_in, dim_out, {approximate='none', bias=true})
local GELU = class('GELU', nn.Module)
function GELU:__init(dim_in, dim_out, opts)
  nn.Module.__init(self)
  local a = U.kw('GELU', opts, { { 'approximate', 'none' }, { 'bias', true } })
  self.proj = nn.Linear(dim_in, dim_out, a.bias, U.fo(a))
  self.approximate = a.approximate
end
function GELU:forward(x) return Fo.gelu(self.proj(x), { approximate = self.approximate }) end
M.GELU = GELU

-- GEGLU(dim_in, dim_out, {bias=true})
local GEGLU = class('GEGLU', nn.Module)
function GEGLU:__init(dim_in, dim_out, opts)
  nn.Module.__init(self)
  local a = U.kw('GEGLU', opts, { { 'bias', true } })
  self.proj = nn.Linear(dim_in, dim_out * 2, a.bias, U.fo(a))
end
function GEGLU:forward(x)
  local hg = self.proj(x):chunk(2, -1)
  return hg[1] * Fo.gelu(hg[2])
end
M.GEGLU = GEGLU

-- ApproximateGELU(dim_in, dim_out, {bias=true})
local ApproximateGELU = class('ApproximateGELU', nn.Module)
function ApproximateGELU:__init(dim_in, dim_out, opts)
  nn.Module.__init(self)
  local a = U.kw('ApproximateGELU', opts, { { 'bias', true } })
  self.proj = nn.Linear(dim_in, dim_out, a.bias, U.fo(a))
end
function ApproximateGELU:forward(x)
  x = self.proj(x)
  return x * (x * 1.702):sigmoid()
end
M.ApproximateGELU = ApproximateGELU

return M
