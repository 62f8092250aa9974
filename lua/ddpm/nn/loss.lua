-- nn/loss.lua: MSELoss and L1Loss modules (reduction 'mean' | 'sum' | 'none').
local class = require 'ddpm.class'
local Module = require 'ddpm.nn.module'
local F = require 'ddpm.nn.functional'
local raise = require('ddpm.ffi').raise

local M = {}

local function loss(name, fname)
  local cls = class(name, Module)
  function cls:__init(opts)
    Module.__init(self)
    local r = type(opts) == 'table' and opts.reduction or opts or 'mean'
    if r ~= 'mean' and r ~= 'sum' and r ~= 'none' then
      raise(string.format("%s: reduction must be 'mean', 'sum' or 'none', got %s", name, tostring(r)))
    end
    self.reduction = r
  end
  function cls:forward(input, target) return F[fname](input, target, { reduction = self.reduction }) end
  M[name] = cls
end
loss('MSELoss', 'mse_loss')
loss('L1Loss', 'l1_loss')

return M
