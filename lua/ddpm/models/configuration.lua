-- models/configuration.lua: diffusers-style model configs: a schema (name, default, kind) per
-- model class, validation of user tables and config.json files (unknown keys are errors that
-- list the valid names; '_'-prefixed keys are ignored), and config.json writing exactly as
-- diffusers' to_json_string does (sorted keys, indent 2, Python number formatting).
local ffi = require 'ffi'
local R = require 'ddpm.nn.pyrepr'
local raise = require('ddpm.ffi').raise

local M = {}
M.DIFFUSERS_VERSION = '0.27.2'

local ok_cjson, cjson = pcall(require, 'cjson')

-- None: an explicit null in a config (Lua tables cannot hold nil, so `mid_block_type = None`
-- says "no mid block" where leaving the key out means "the default").  It is JSON's null.
M.None = ok_cjson and cjson.null or setmetatable({}, { __tostring = function() return 'None' end })

-- ---- JSON reading ------------------------------------------------------------------------------------
-- nulls inside values become nil; top-level nulls stay M.None (explicit) for resolve()
local function denull(v, top)
  if v == M.None then return (not top) and nil or v end
  if type(v) == 'table' then
    local out = {}
    for k, x in pairs(v) do out[k] = denull(x, false) end
    return out
  end
  return v
end

function M.read_json(path)
  if not ok_cjson then raise('reading ' .. path .. ' needs lua-cjson (apt-get install lua-cjson)') end
  local f, err = io.open(path, 'rb')
  if not f then raise('cannot open config file ' .. path .. ': ' .. tostring(err)) end
  local text = f:read('*a')
  f:close()
  local ok, v = pcall(cjson.decode, text)
  if not ok then raise(string.format('%s: not valid JSON (%s)', path, tostring(v))) end
  if type(v) ~= 'table' then raise(path .. ': expected a JSON object') end
  local out = {}
  for k, x in pairs(v) do out[k] = denull(x, true) end
  return out
end

-- ---- JSON writing as Python's json.dumps(indent=2, sort_keys=True) ------------------------------------------
local function jstr(s)
  s = s:gsub('[%c"\\\128-\255]', function(c)
    local b = c:byte()
    if c == '"' then return '\\"' elseif c == '\\' then return '\\\\'
    elseif c == '\n' then return '\\n' elseif c == '\r' then return '\\r' elseif c == '\t' then return '\\t'
    elseif c == '\b' then return '\\b' elseif c == '\f' then return '\\f' end
    return string.format('\\u%04x', b)
  end)
  return '"' .. s .. '"'
end

-- fmt: how to write numbers at this place ('int', 'float' or 'number' = int when integral)
local function encode(v, indent, fmt)
  local t = type(v)
  if v == nil then return 'null' end
  if t == 'boolean' then return v and 'true' or 'false' end
  if t == 'string' then return jstr(v) end
  if t == 'number' then
    if v ~= v then return 'NaN' end
    if v == math.huge then return 'Infinity' end
    if v == -math.huge then return '-Infinity' end
    if fmt == 'float' then return R.float(v) end
    return R.number(v)
  end
  if t == 'table' then
    local pad = string.rep(' ', indent + 2)
    if #v > 0 or next(v) == nil then
      if #v == 0 then return '[]' end
      local parts = {}
      for i = 1, #v do parts[i] = pad .. encode(v[i], indent + 2, fmt) end
      return '[\n' .. table.concat(parts, ',\n') .. '\n' .. string.rep(' ', indent) .. ']'
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = pad .. jstr(k) .. ': ' .. encode(v[k], indent + 2, fmt) end
    return '{\n' .. table.concat(parts, ',\n') .. '\n' .. string.rep(' ', indent) .. '}'
  end
  raise('config: cannot write a value of type ' .. t .. ' to JSON')
end

-- to_json_string(schema, cfg, class_name): every schema key (null for nil), plus _class_name
-- and _diffusers_version, sorted, as diffusers writes config.json
function M.to_json_string(schema, cfg, class_name)
  local keys = { '_class_name', '_diffusers_version' }
  local kinds = {}
  for _, s in ipairs(schema.list) do
    keys[#keys + 1] = s[1]
    kinds[s[1]] = s[3]
  end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    local v
    if k == '_class_name' then v = class_name elseif k == '_diffusers_version' then v = M.DIFFUSERS_VERSION else v = cfg[k] end
    local kind = kinds[k]
    parts[i] = '  ' .. jstr(k) .. ': ' .. encode(v, 2, kind == 'float' and 'float' or kind == 'int' and 'int' or 'number')
  end
  return '{\n' .. table.concat(parts, ',\n') .. '\n}\n'
end

-- ---- schemas and validation ----------------------------------------------------------------------------------
-- schema(list): list entries are {name, default, kind[, supported_values]}; kind is one of
-- int, float, number, bool, string, list, any.  `supported`, when given, is a function(v)
-- returning an error message for values ddpm-lua does not implement.
function M.schema(list)
  local s = { list = list, by_name = {} }
  for _, e in ipairs(list) do s.by_name[e[1]] = e end
  return s
end

local function copy(v)
  if type(v) ~= 'table' then return v end
  local o = {}
  for k, x in pairs(v) do o[k] = copy(x) end
  return o
end

local function kind_ok(kind, v)
  if v == nil then return true end
  if kind == 'int' then return type(v) == 'number' and v == math.floor(v) end
  if kind == 'float' or kind == 'number' then return type(v) == 'number' end
  if kind == 'bool' then return type(v) == 'boolean' end
  if kind == 'string' then return type(v) == 'string' end
  if kind == 'list' then return type(v) == 'table' end
  return true
end

-- resolve(schema, user, owner): a full config (defaults filled in), after checking names, kinds
-- and supported values.  user may hold '_'-prefixed keys (ignored).
function M.resolve(schema, user, owner)
  if user ~= nil and type(user) ~= 'table' then raise(owner .. ': config must be a table, got ' .. type(user)) end
  user = user or {}
  local cfg = {}
  local bad = {}
  for k in pairs(user) do
    if type(k) ~= 'string' then
      bad[#bad + 1] = tostring(k)
    elseif k:sub(1, 1) ~= '_' and not schema.by_name[k] then
      bad[#bad + 1] = k
    end
  end
  if #bad > 0 then
    table.sort(bad)
    local names = {}
    for _, e in ipairs(schema.list) do names[#names + 1] = e[1] end
    table.sort(names)
    raise(string.format('%s: unknown config key%s %s (valid keys: %s)', owner, #bad > 1 and 's' or '',
      "'" .. table.concat(bad, "', '") .. "'", table.concat(names, ', ')))
  end
  for _, e in ipairs(schema.list) do
    local name, default, kind, supported = e[1], e[2], e[3], e[4]
    local v = user[name]
    if v == nil then v = copy(default) elseif v == M.None then v = nil else v = copy(v) end
    if not kind_ok(kind, v) then
      raise(string.format('%s: config key %s must be %s, got %s', owner, name,
        ({ int = 'an integer', float = 'a number', number = 'a number', bool = 'a boolean', string = 'a string',
          list = 'a list' })[kind] or kind, tostring(v)))
    end
    if supported then
      local msg = supported(v)
      if msg then raise(string.format('%s: %s = %s: %s', owner, name, type(v) == 'table' and '{...}' or tostring(v), msg)) end
    end
    cfg[name] = v
  end
  return cfg
end

-- only the default value (nil here) is implemented
function M.only(...)
  local n, allowed = select('#', ...), { ... }
  return function(v)
    for i = 1, n do if v == allowed[i] then return nil end end
    local shown = {}
    for i = 1, n do shown[i] = allowed[i] == nil and 'nil' or string.format('%q', allowed[i]) end
    return 'not supported by ddpm-lua (supported: ' .. table.concat(shown, ', ') .. ')'
  end
end
function M.only_nil(v) if v ~= nil then return 'not supported by ddpm-lua (must be nil/null)' end end

M.copy = copy
M._ffi = ffi
return M
