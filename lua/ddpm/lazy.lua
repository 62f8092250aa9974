-- lazy.lua: a package table whose members load on first use, so `require 'ddpm'` stays fast and
-- a script pays only for the parts it touches.
--   return require('ddpm.lazy')(M, { Name = { 'ddpm.pkg.module', 'field' }, mod = { 'ddpm.pkg.mod' } })
-- A spec without a field gives the whole module.
return function(M, specs)
  return setmetatable(M, { __index = function(t, k)
    local spec = specs[k]
    if not spec then return nil end
    local mod = require(spec[1])
    local v = spec[2] and mod[spec[2]] or mod
    rawset(t, k, v)
    return v
  end })
end
