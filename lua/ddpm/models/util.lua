-- models/util.lua: keyword-argument handling for the diffusers modules (defaults, unknown-name
-- errors listing the valid names), activation lookup, and factory options passed to layers.
local ddpm = require 'ddpm'
local nn = require 'ddpm.nn'
local raise = require('ddpm.ffi').raise

local M = {}

-- kw(owner, opts, spec): spec is an ordered list of {name, default}; returns a table with every
-- name set (nil defaults stay nil).  Factory options (generator, dtype, device) pass through.
M.factory_keys = { generator = true, dtype = true, device = true }
function M.kw(owner, opts, spec)
  opts = opts or {}
  if type(opts) ~= 'table' then raise(string.format('%s: options must be a table, got %s', owner, type(opts))) end
  local valid = {}
  for _, s in ipairs(spec) do valid[s[1]] = true end
  for k in pairs(opts) do
    if not valid[k] and not M.factory_keys[k] then
      local names = {}
      for _, s in ipairs(spec) do names[#names + 1] = s[1] end
      raise(string.format("%s: unknown option '%s' (valid: %s)", owner, tostring(k), table.concat(names, ', ')))
    end
  end
  local a = {}
  for _, s in ipairs(spec) do
    local v = opts[s[1]]
    if v == nil then v = s[2] end
    a[s[1]] = v
  end
  a.generator, a.dtype, a.device = opts.generator, opts.dtype, opts.device
  return a
end

-- the factory options of `a` merged into `extra` (for nn layer constructors)
function M.fo(a, extra)
  local o = {}
  if extra then for k, v in pairs(extra) do o[k] = v end end
  o.generator, o.dtype, o.device = a.generator, a.dtype, a.device
  return o
end

-- diffusers' get_activation: silu/swish, mish, gelu, relu
local activations = { swish = 'SiLU', silu = 'SiLU', mish = 'Mish', gelu = 'GELU', relu = 'ReLU' }
function M.get_activation(name)
  local cls = type(name) == 'string' and activations[name:lower()]
  if not cls then raise('Unsupported activation function: ' .. tostring(name) .. ' (valid: silu, swish, mish, gelu, relu)') end
  return nn[cls]()
end

-- act(norm(x)) for a GroupNorm and an activation module, as one fused kernel when the
-- activation is SiLU and neither module has hooks (same values and gradients, less memory)
local F = require 'ddpm.nn.functional'
local class = require 'ddpm.class'
local function hooked(m) return rawget(m, '_forward_hooks') ~= nil or rawget(m, '_forward_pre_hooks') ~= nil end
function M.norm_act(norm, act, x)
  if F.group_norm_silu and getmetatable(act) == nn.SiLU and getmetatable(norm) == nn.GroupNorm and not hooked(norm)
    and not hooked(act) then
    return F.group_norm_silu(x, norm.num_groups, norm.weight, norm.bias, norm.eps)
  end
  return act(norm(x))
end
M._class = class

function M.is_list(v) return type(v) == 'table' and not ddpm.is_tensor(v) end

return M
