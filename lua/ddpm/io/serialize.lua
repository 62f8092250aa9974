-- io/serialize.lua: ddpm.save(obj, path) / ddpm.load(path) (≈ torch.save/torch.load) for state
-- dicts and plain Lua tables holding tensors, numbers, strings, booleans, generators and nested
-- tables (checkpoints: model, optimizer and RNG state).  The file is a safetensors file: every
-- tensor is a safetensors entry (a flat state dict keeps its names, so other tools can read it) and
-- the table structure is JSON in the metadata key "ddpm.structure".  Writes are atomic.
local F = require 'ddpm.ffi'
local T = require 'ddpm.tensor'
local json = require 'ddpm.io.json'
local st = require 'ddpm.io.safetensors'
local ffi = F.ffi
local raise = F.raise

local M = {}
local STRUCT_KEY, FORMAT_KEY, FORMAT = 'ddpm.structure', 'ddpm.format', 'ddpm-lua.save/1'

local ddpm_mod
local function is_generator(x)
  ddpm_mod = ddpm_mod or require('ddpm')
  return type(x) == 'table' and ddpm_mod.is_generator(x)
end

local function hex(s) return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end)) end
local function unhex(s) return (s:gsub('%x%x', function(h) return string.char(tonumber(h, 16)) end)) end

-- Encode obj into JSON text, collecting tensors into names/list.
local function encode(obj)
  local names, list = {}, {}
  local taken, by_ptr = {}, {}
  local seen = {}
  local out = {}
  local function put(s) out[#out + 1] = s end
  local function tensor_name(path)
    local name = path ~= '' and path or '_'
    if taken[name] then
      local k = 2
      while taken[name .. '#' .. k] do k = k + 1 end
      name = name .. '#' .. k
    end
    taken[name] = true
    return name
  end
  local enc
  local function key_path(path, k) return path == '' and tostring(k) or (path .. '.' .. tostring(k)) end
  local function where_of(path) return path == '' and 'obj' or ('obj.' .. path) end
  function enc(x, path)
    local tx = type(x)
    if T.is_tensor(x) then
      local ptr = tostring(T.address(x))
      local name = by_ptr[ptr]
      if not name then
        name = tensor_name(path)
        by_ptr[ptr] = name
        names[#names + 1] = name
        list[#list + 1] = x
      end
      put('{"__tensor__":' .. json.string(name))
      local dev = x.device
      if dev.type ~= 'cpu' then put(',"device":' .. json.string(tostring(dev))) end
      if x.requires_grad then put(',"requires_grad":true') end
      put('}')
    elseif tx == 'number' then
      local s = json.number(x)
      if s then put(s)
      else put('{"__number__":"' .. (x ~= x and 'nan' or (x > 0 and 'inf' or '-inf')) .. '"}') end
    elseif tx == 'string' then
      if json.is_utf8(x) then put(json.string(x)) else put('{"__bytes__":"' .. hex(x) .. '"}') end
    elseif tx == 'boolean' then
      put(x and 'true' or 'false')
    elseif is_generator(x) then
      local s = x:get_state()
      put(string.format('{"__generator__":{"seed":%s,"offset":%s,"device":%s}}', json.number(s.seed),
        json.number(s.offset), json.string(tostring(x.device or 'cpu'))))
    elseif tx == 'table' then
      if seen[x] then raise('save: ' .. where_of(path) .. ' contains itself (a cycle); expected a tree of tables') end
      seen[x] = true
      local plain_keys = true
      for k in pairs(x) do
        if type(k) ~= 'string' or k:sub(1, 2) == '__' or not json.is_utf8(k) then plain_keys = false break end
      end
      if json.is_array(x) then
        put('[')
        for i = 1, #x do
          if i > 1 then put(',') end
          enc(x[i], key_path(path, i))
        end
        put(']')
      elseif plain_keys then
        local keys = {}
        for k in pairs(x) do keys[#keys + 1] = k end
        table.sort(keys)
        put('{')
        for i, k in ipairs(keys) do
          if i > 1 then put(',') end
          put(json.string(k) .. ':')
          enc(x[k], key_path(path, k))
        end
        put('}')
      else
        -- numeric, boolean, reserved or binary keys: a list of [key, value] pairs
        local keys = {}
        for k in pairs(x) do
          local tk = type(k)
          if tk ~= 'string' and tk ~= 'number' and tk ~= 'boolean' then
            raise(string.format('save: %s has a %s key; keys must be strings, numbers or booleans', where_of(path), tk))
          end
          keys[#keys + 1] = k
        end
        table.sort(keys, function(a, b)
          if type(a) ~= type(b) then return type(a) < type(b) end
          if type(a) == 'boolean' then return (not a) and b end
          return a < b
        end)
        put('{"__kv__":[')
        for i, k in ipairs(keys) do
          if i > 1 then put(',') end
          put('[')
          enc(k, key_path(path, '<key>'))
          put(',')
          enc(x[k], key_path(path, k))
          put(']')
        end
        put(']}')
      end
      seen[x] = nil
    else
      raise(string.format('save: %s is a %s; expected tensors, numbers, strings, booleans, generators or tables of them ' ..
        '(save a module as model:state_dict())', where_of(path), tx == 'cdata' and 'cdata (not a tensor)' or tx))
    end
  end
  enc(obj, '')
  return table.concat(out), names, list
end

-- save(obj, path, {metadata = {string = string}})
function M.save(obj, path, opts)
  if type(path) ~= 'string' then
    raise('save: path must be a string (ddpm.save(obj, path) as torch.save), got ' .. type(path))
  end
  local text, names, list = encode(obj)
  local tensors = {}
  for i = 1, #names do tensors[names[i]] = list[i] end
  local meta = { format = 'pt', [FORMAT_KEY] = FORMAT, [STRUCT_KEY] = text }
  if opts and opts.metadata then
    for k, v in pairs(opts.metadata) do
      if k == STRUCT_KEY or k == FORMAT_KEY then raise('save: metadata key "' .. k .. '" is reserved') end
      meta[k] = v
    end
  end
  st.save(path, tensors, meta)
end

local function device_for(rec, opts)
  local loc = opts and opts.map_location
  if loc ~= nil then
    if type(loc) == 'function' then return loc(rec.device or 'cpu') end
    return loc
  end
  return rec.device
end

-- load(path, {map_location = 'cpu' | 'cuda' | function(saved_device) -> device})
function M.load(path, opts)
  if type(path) ~= 'string' then raise('load: path must be a string, got ' .. type(path)) end
  local tensors, meta = st.load(path)
  local text = meta[STRUCT_KEY]
  if not text then
    -- a plain safetensors file (e.g. diffusers weights): the state dict itself
    local loc = opts and opts.map_location
    if loc and type(loc) ~= 'function' then for k, v in pairs(tensors) do tensors[k] = v:to(loc) end end
    return tensors
  end
  local ok, tree = pcall(require('cjson').decode, text)
  if not ok then raise(string.format("load: '%s': the %s metadata is not valid JSON (%s)", path, STRUCT_KEY, tostring(tree))) end
  local function bad(what)
    raise(string.format("load: '%s': malformed %s metadata: %s", path, STRUCT_KEY, what))
  end
  local ddpm = require 'ddpm'
  local restored = {}
  local function dec(x)
    local tx = type(x)
    if tx ~= 'table' then
      if x == require('cjson').null then bad('null value') end
      return x
    end
    if x.__tensor__ ~= nil then
      local name = x.__tensor__
      if restored[name] then return restored[name] end
      local t = tensors[name]
      if not t then bad('tensor "' .. tostring(name) .. '" is missing from the file') end
      local dev = device_for(x, opts)
      if dev and dev ~= 'cpu' then
        local okd, moved = pcall(t.to, t, dev)
        if not okd then
          raise(string.format("load: '%s': tensor \"%s\" was saved on %s, which is not available here (%s); pass {map_location='cpu'}",
            path, name, tostring(dev), tostring(moved):gsub('^.-:%d+: ', '')))
        end
        t = moved
      end
      if x.requires_grad then t:requires_grad_(true) end
      restored[name] = t
      return t
    elseif x.__number__ ~= nil then
      local v = ({ inf = math.huge, ['-inf'] = -math.huge, nan = 0 / 0 })[x.__number__]
      if v == nil then bad('unknown number ' .. tostring(x.__number__)) end
      return v
    elseif x.__bytes__ ~= nil then
      return unhex(tostring(x.__bytes__))
    elseif x.__generator__ ~= nil then
      local g = ddpm.Generator(x.__generator__.device)
      g:set_state({ seed = x.__generator__.seed, offset = x.__generator__.offset })
      return g
    elseif x.__kv__ ~= nil then
      local r = {}
      for _, kv in ipairs(x.__kv__) do
        if type(kv) ~= 'table' or kv[1] == nil then bad('bad __kv__ pair') end
        r[dec(kv[1])] = dec(kv[2])
      end
      return r
    end
    local r = {}
    for k, v in pairs(x) do r[k] = dec(v) end
    return r
  end
  return dec(tree)
end

M.encode = encode
return M
