-- models/st.lua: safetensors reading/writing for the model files.  Uses ddpm.load_safetensors /
-- ddpm.save_safetensors when the engine provides them; otherwise a small Lua reader/writer of
-- the same format (u64 header length, JSON header sorted by key and space-padded to 8 bytes,
-- raw little-endian data), so models load and save on every build.
local ddpm = require 'ddpm'
local ffi = require 'ffi'
local raise = require('ddpm.ffi').raise

local M = {}

local codes = { F32 = 'float32', F64 = 'float64', F16 = 'float16', BF16 = 'bfloat16', I64 = 'int64', I32 = 'int32',
  U8 = 'uint8', BOOL = 'bool' }
local names = {}
for k, v in pairs(codes) do names[v] = k end

local function lua_load(path)
  local cjson = require 'cjson'
  local f, err = io.open(path, 'rb')
  if not f then raise('cannot open safetensors file ' .. path .. ': ' .. tostring(err)) end
  local data = f:read('*a')
  f:close()
  if #data < 8 then raise(path .. ': not a safetensors file (too short)') end
  local n = 0
  for i = 8, 1, -1 do n = n * 256 + data:byte(i) end
  if 8 + n > #data then raise(path .. ': not a safetensors file (header length beyond the end)') end
  local ok, hdr = pcall(cjson.decode, data:sub(9, 8 + n))
  if not ok or type(hdr) ~= 'table' then raise(path .. ': not a safetensors file (bad JSON header)') end
  local out, meta = {}, nil
  local base = 8 + n
  for k, e in pairs(hdr) do
    if k == '__metadata__' then
      meta = e
    else
      local dt = codes[e.dtype]
      if not dt then raise(string.format('%s: tensor %s has unsupported dtype %s', path, k, tostring(e.dtype))) end
      local b, en = e.data_offsets[1], e.data_offsets[2]
      local bytes = data:sub(base + b + 1, base + en)
      local shape = e.shape
      out[k] = ddpm.frombuffer(bytes, #shape > 0 and shape or {}, ddpm[dt])
    end
  end
  return out, meta
end

local function lua_save(tensors, path, metadata)
  local cjson = require 'cjson'
  local keys = {}
  for k in pairs(tensors) do keys[#keys + 1] = k end
  table.sort(keys)
  local entries, blobs, off = {}, {}, 0
  for i, k in ipairs(keys) do
    local t = tensors[k]:detach():cpu():contiguous()
    local nbytes = t:numel() * t:element_size()
    blobs[i] = nbytes > 0 and ffi.string(t:data_ptr(), nbytes) or ''
    entries[#entries + 1] = cjson.encode(k) .. ':{"dtype":"' .. names[t.dtype.name] .. '","shape":' ..
      (t:dim() == 0 and '[]' or cjson.encode(t:shape())) .. ',"data_offsets":[' .. off .. ',' .. (off + nbytes) .. ']}'
    off = off + nbytes
  end
  if metadata and next(metadata) then
    local mk = {}
    for k in pairs(metadata) do mk[#mk + 1] = k end
    table.sort(mk)
    local parts = {}
    for i, k in ipairs(mk) do parts[i] = cjson.encode(k) .. ':' .. cjson.encode(tostring(metadata[k])) end
    table.insert(entries, 1, '"__metadata__":{' .. table.concat(parts, ',') .. '}')
  end
  local header = '{' .. table.concat(entries, ',') .. '}'
  header = header .. string.rep(' ', (8 - #header % 8) % 8)
  local n = #header
  local len = {}
  for i = 1, 8 do
    len[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  local tmp = path .. '.tmp'
  local f, err = io.open(tmp, 'wb')
  if not f then raise('cannot write ' .. tmp .. ': ' .. tostring(err)) end
  f:write(table.concat(len), header)
  for _, b in ipairs(blobs) do f:write(b) end
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then raise('cannot rename ' .. tmp .. ' to ' .. path .. ': ' .. tostring(rerr)) end
end

-- load(path) -> {name = tensor}, metadata
function M.load(path)
  if ddpm.load_safetensors then return ddpm.load_safetensors(path) end
  return lua_load(path)
end
-- save(tensors, path, metadata)
function M.save(tensors, path, metadata)
  if ddpm.save_safetensors then return ddpm.save_safetensors(tensors, path, metadata) end
  return lua_save(tensors, path, metadata)
end

M._lua_load, M._lua_save = lua_load, lua_save
return M
