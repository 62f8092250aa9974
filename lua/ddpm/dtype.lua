-- dtype.lua: dtype and device objects with PyTorch's names.  Both are callable (returning
-- themselves) so `t.dtype` and `t:dtype()` both work, as the API promises.
local raise = require('ddpm.ffi').raise
local M = {}

local Dtype = {}
Dtype.__index = Dtype
Dtype.__tostring = function(d) return 'ddpm.' .. d.name end
Dtype.__call = function(d) return d end

local specs = {
  { 'float32', 0, 4, true }, { 'float64', 1, 8, true }, { 'float16', 2, 2, true }, { 'bfloat16', 3, 2, true },
  { 'int64', 4, 8, false }, { 'int32', 5, 4, false }, { 'uint8', 6, 1, false }, { 'bool', 7, 1, false },
}
M.by_id = {}
M.by_name = {}
for _, s in ipairs(specs) do
  local d = setmetatable({ name = s[1], id = s[2], itemsize = s[3], is_floating_point = s[4] }, Dtype)
  M.by_id[s[2]] = d
  M.by_name[s[1]] = d
end
-- PyTorch's aliases
local aliases = { float = 'float32', double = 'float64', half = 'float16', long = 'int64', int = 'int32' }
for a, n in pairs(aliases) do M.by_name[a] = M.by_name[n] end

function M.is_dtype(x) return getmetatable(x) == Dtype end

-- Accept a dtype object or its name ('float32', 'float', ...).
function M.resolve(x, what)
  if x == nil then return nil end
  if getmetatable(x) == Dtype then return x end
  if type(x) == 'string' then
    local d = M.by_name[(x:gsub('^ddpm%.', ''):gsub('^torch%.', ''))]
    if d then return d end
  end
  local names = {}
  for _, s in ipairs(specs) do names[#names + 1] = s[1] end
  raise(string.format('%s: expected a dtype (one of ddpm.%s), got %s', what or 'dtype',
    table.concat(names, ', ddpm.'), tostring(x)))
end

-- Devices: ids as in the C API (0 cpu, 1 + k cuda:k).
local Device = {}
Device.__index = Device
Device.__tostring = function(d) return d.str end
Device.__call = function(d) return d end
Device.__eq = function(a, b) return a.id == b.id end
local dev_cache = {}
function M.device_from_id(id)
  local d = dev_cache[id]
  if not d then
    if id == 0 then
      d = setmetatable({ type = 'cpu', index = nil, id = 0, str = 'cpu' }, Device)
    else
      d = setmetatable({ type = 'cuda', index = id - 1, id = id, str = 'cuda:' .. (id - 1) }, Device)
    end
    dev_cache[id] = d
  end
  return d
end
function M.is_device(x) return getmetatable(x) == Device end

function M.parse_device(x, what)
  if x == nil then return nil end
  if getmetatable(x) == Device then return x.id end
  if type(x) == 'string' then
    if x == 'cpu' then return 0 end
    if x == 'cuda' then return 1 end
    local k = x:match('^cuda:(%d+)$')
    if k then return 1 + tonumber(k) end
  end
  raise(string.format("%s: expected a device ('cpu', 'cuda' or 'cuda:N'), got %s", what or 'device', tostring(x)))
end

return M
