-- ddpm.nn (≈ torch.nn): modules; ddpm.nn.functional holds the stateless ops, ddpm.nn.init the
-- initialisers.  Each layer family lives in its own file; this table gathers them.
local nn = {}
nn.functional = require 'ddpm.nn.functional'
nn.init = require 'ddpm.nn.initializers'
nn.Module = require 'ddpm.nn.module'
nn.utils = require 'ddpm.nn.utils'

local families = { 'container', 'linear', 'conv', 'normalization', 'activation', 'dropout', 'sparse', 'shape', 'loss' }
for _, f in ipairs(families) do
  for k, v in pairs(require('ddpm.nn.' .. f)) do
    if k:sub(1, 1) ~= '_' then nn[k] = v end
  end
end

-- nn.class(name, parent=nn.Module): define a custom module (see lua/ddpm/class.lua)
local class = require 'ddpm.class'
function nn.class(name, parent) return class(name, parent or nn.Module) end
nn.isinstance = class.isinstance

return nn
