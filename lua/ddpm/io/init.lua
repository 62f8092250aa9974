-- io/init.lua: ddpm.io, file formats: safetensors, npy, png, generic ddpm.save/ddpm.load, atomic
-- writes.  Submodules load on first use, so `require 'ddpm'` stays fast.
local M = {}

local sub = { safetensors = 'ddpm.io.safetensors', atomic = 'ddpm.io.atomic', npy = 'ddpm.io.npy',
  png = 'ddpm.io.png', serialize = 'ddpm.io.serialize' }

-- ddpm.io.<name>(...) forwards to submodule function fn
local function forward(name, modname, fn)
  M[name] = function(...) return require(sub[modname])[fn](...) end
end

forward('load_safetensors', 'safetensors', 'load')
forward('save_safetensors', 'safetensors', 'save')
forward('safe_open', 'safetensors', 'safe_open')
forward('read_safetensors_header', 'safetensors', 'read_header')
forward('load_npy', 'npy', 'load')
forward('save_npy', 'npy', 'save')
forward('load_png', 'png', 'load')
forward('save_png', 'png', 'save')
forward('save', 'serialize', 'save')
forward('load', 'serialize', 'load')
forward('write_file_atomic', 'atomic', 'write')

setmetatable(M, { __index = function(t, k)
  if sub[k] then
    local v = require(sub[k])
    rawset(t, k, v)
    return v
  end
end })

return M
