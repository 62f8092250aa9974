-- nn/common.lua: helpers shared by the layer files: splitting PyTorch-style positional
-- arguments from a trailing options table, and factory options (dtype, device, generator).
local ddpm = require 'ddpm'
local T = require 'ddpm.tensor'
local raise = require('ddpm.ffi').raise

local M = {}

-- args(names, defaults, ...) -> table: positional values fill names in order; a trailing plain
-- table supplies the rest by name; unknown option names are an error naming the valid ones.
function M.args(layer, names, defaults, ...)
  local n = select('#', ...)
  local last = n > 0 and select(n, ...) or nil
  local opts
  if type(last) == 'table' and not T.is_tensor(last) and getmetatable(last) == nil and last[1] == nil then
    opts = last
    n = n - 1
  end
  local a = {}
  for i = 1, n do
    local v = select(i, ...)
    if names[i] == nil then raise(string.format('%s: too many positional arguments (%d)', layer, n)) end
    a[names[i]] = v
  end
  if opts then
    local valid = {}
    for _, k in ipairs(names) do valid[k] = true end
    for _, k in ipairs(M.factory) do valid[k] = true end
    for k, v in pairs(opts) do
      if not valid[k] then
        local list = {}
        for _, nm in ipairs(names) do list[#list + 1] = nm end
        for _, nm in ipairs(M.factory) do list[#list + 1] = nm end
        raise(string.format("%s: unknown option '%s' (valid: %s)", layer, tostring(k), table.concat(list, ', ')))
      end
      if a[k] == nil then a[k] = v end
    end
  end
  for k, v in pairs(defaults) do if a[k] == nil then a[k] = v end end
  return a
end
M.factory = { 'dtype', 'device', 'generator' }

-- an uninitialised parameter tensor of the given shape with the factory options
function M.empty(a, ...)
  local sizes = type((...)) == 'table' and (...) or { ... }
  return ddpm.empty(sizes, { dtype = a.dtype, device = a.device })
end
function M.factory_opts(a) return { dtype = a.dtype, device = a.device, generator = a.generator } end

function M.need_int(layer, what, v, min)
  if type(v) ~= 'number' or v ~= math.floor(v) or v < (min or 0) then
    raise(string.format('%s: %s must be an integer >= %d, got %s', layer, what, min or 0, tostring(v)))
  end
  return v
end

-- an int or a pair {h, w}
function M.pair(layer, what, v)
  if type(v) == 'number' then return { v, v } end
  if type(v) == 'table' and #v == 2 and type(v[1]) == 'number' and type(v[2]) == 'number' then return { v[1], v[2] } end
  raise(string.format('%s: %s must be a number or a pair {h, w}, got %s', layer, what, tostring(v)))
end

return M
