-- io/safetensors.lua: safetensors files from Lua (≈ safetensors.torch): load/save whole files,
-- and safe_open for reading single tensors lazily.  Tensors load zero-copy from the mapping.
local F = require 'ddpm.ffi'
local T = require 'ddpm.tensor'
local ffi, C = F.ffi, F.C
local raise = F.raise

local M = {}

local function need_path(path, op)
  if type(path) ~= 'string' then
    raise(string.format('%s: path must be a string, got %s', op, path == nil and 'nil' or type(path)))
  end
  if path:find('\0', 1, true) then raise(op .. ': path contains a NUL byte') end
end

local hp = ffi.new('ddpm_safetensors*[1]')
local function open_handle(path, op)
  need_path(path, op)
  if C.ddpm_safetensors_open(hp, path) ~= 0 then raise(F.last_error()) end
  return ffi.gc(hp[0], C.ddpm_safetensors_close)
end
local function close_handle(h)
  ffi.gc(h, nil)
  C.ddpm_safetensors_close(h)
end

local function metadata_of(h)
  local meta = {}
  for i = 0, tonumber(C.ddpm_safetensors_metadata_count(h)) - 1 do
    meta[ffi.string(C.ddpm_safetensors_metadata_key(h, i))] =
      ffi.string(C.ddpm_safetensors_metadata_value(h, i), C.ddpm_safetensors_metadata_value_len(h, i))
  end
  return meta
end

local function device_of(opts)
  if opts and opts.device ~= nil then return opts.device end
  return nil
end

-- load(path, {device=}) -> {name = tensor}, {metadata key = string}
function M.load(path, opts)
  local h = open_handle(path, 'load_safetensors')
  local dev = device_of(opts)
  local out = {}
  for i = 0, tonumber(C.ddpm_safetensors_count(h)) - 1 do
    local t = T.call2(C.ddpm_safetensors_get, h, i)
    if dev then t = t:to(dev) end
    out[ffi.string(C.ddpm_safetensors_name(h, i))] = t
  end
  local meta = metadata_of(h)
  close_handle(h) -- the tensors keep the mapping alive
  return out, meta
end

-- Only the metadata and the tensor names/shapes/dtypes, without touching the data.
function M.read_header(path)
  local h = open_handle(path, 'load_safetensors')
  local info = {}
  local shape = ffi.new('int64_t[8]')
  for i = 0, tonumber(C.ddpm_safetensors_count(h)) - 1 do
    local nd = C.ddpm_safetensors_shape(h, i, shape)
    local s = {}
    for d = 0, nd - 1 do s[d + 1] = tonumber(shape[d]) end
    info[ffi.string(C.ddpm_safetensors_name(h, i))] = { dtype = ffi.string(C.ddpm_safetensors_dtype_name(h, i)), shape = s }
  end
  local meta = metadata_of(h)
  close_handle(h)
  return info, meta
end

-- safe_open(path): a handle with :keys(), :get_tensor(name), :metadata(), :close()
local Handle = {}
Handle.__index = Handle
function M.safe_open(path, opts)
  local h = open_handle(path, 'safe_open')
  return setmetatable({ h = h, path = path, device = device_of(opts) }, Handle)
end
function Handle:keys()
  if not self.h then raise('safe_open: ' .. self.path .. ' is closed') end
  local ks = {}
  for i = 0, tonumber(C.ddpm_safetensors_count(self.h)) - 1 do ks[i + 1] = ffi.string(C.ddpm_safetensors_name(self.h, i)) end
  return ks
end
function Handle:get_tensor(name)
  if not self.h then raise('safe_open: ' .. self.path .. ' is closed') end
  if type(name) ~= 'string' then raise('get_tensor: name must be a string, got ' .. type(name)) end
  local t = T.call2(C.ddpm_safetensors_get_by_name, self.h, name)
  if self.device then t = t:to(self.device) end
  return t
end
function Handle:metadata()
  if not self.h then raise('safe_open: ' .. self.path .. ' is closed') end
  return metadata_of(self.h)
end
function Handle:close()
  if self.h then close_handle(self.h) end
  self.h = nil
end

-- save(path, tensors, metadata) writes {name = tensor} (any device/layout) and {key = string}
-- atomically.  The order of safetensors.torch.save_file (tensors, path, metadata) works too.
function M.save(path, tensors, metadata)
  if type(path) == 'table' and type(tensors) == 'string' then path, tensors = tensors, path end
  need_path(path, 'save_safetensors')
  if type(tensors) ~= 'table' then
    raise('save_safetensors: tensors must be a table {name = tensor}, got ' .. type(tensors))
  end
  local names, list = {}, {}
  for k, v in pairs(tensors) do
    if type(k) ~= 'string' then
      raise(string.format('save_safetensors: key %s is a %s, expected tensor names (strings)', tostring(k), type(k)))
    end
    if not T.is_tensor(v) then
      raise(string.format('save_safetensors: "%s" is a %s, expected a tensor', k, type(v)))
    end
    if k:find('\0', 1, true) then raise(string.format('save_safetensors: name %q contains a NUL byte', k)) end
    names[#names + 1] = k
    list[#list + 1] = v
  end
  local mk, mv = {}, {}
  if metadata ~= nil then
    if type(metadata) ~= 'table' then raise('save_safetensors: metadata must be a table {string = string}, got ' .. type(metadata)) end
    for k, v in pairs(metadata) do
      if type(k) ~= 'string' then raise('save_safetensors: metadata keys must be strings, got ' .. type(k)) end
      if type(v) == 'number' or type(v) == 'boolean' then v = tostring(v) end
      if type(v) ~= 'string' then
        raise(string.format('save_safetensors: metadata "%s" is a %s, expected a string', k, type(v)))
      end
      if k:find('\0', 1, true) or v:find('\0', 1, true) then
        raise(string.format('save_safetensors: metadata "%s" contains a NUL byte', k))
      end
      mk[#mk + 1], mv[#mv + 1] = k, v
    end
  end
  local n, nm = #names, #mk
  local cn = ffi.new('const char*[?]', n + 1)
  local ct = ffi.new('ddpm_tensor*[?]', n + 1)
  for i = 1, n do cn[i - 1], ct[i - 1] = names[i], list[i] end
  local ck = ffi.new('const char*[?]', nm + 1)
  local cv = ffi.new('const char*[?]', nm + 1)
  for i = 1, nm do ck[i - 1], cv[i - 1] = mk[i], mv[i] end
  M._keepalive = { names, list, mk, mv } -- the C arrays point into these strings/tensors
  local st = C.ddpm_safetensors_save(path, n, cn, ct, nm, ck, cv)
  M._keepalive = nil
  if st ~= 0 then raise(F.last_error()) end
end

return M
