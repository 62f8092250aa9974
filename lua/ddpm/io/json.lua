-- io/json.lua: JSON for configs and saved structures.  Decoding is lua-cjson's; encoding is our
-- own because cjson rounds numbers to 14 digits (a checkpoint must restore every double exactly)
-- and cannot sort keys (diffusers-style config files are written with sorted keys).
local cjson = require 'cjson'
local raise = require('ddpm.ffi').raise

local M = {}
M.null = cjson.null

local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f', ['\n'] = '\\n', ['\r'] = '\\r',
  ['\t'] = '\\t' }
local function esc(c) return escapes[c] or string.format('\\u%04x', c:byte()) end

-- Valid UTF-8 without NUL (what a JSON string can carry through the C tools).
function M.is_utf8(s)
  if not s:find('[%z\128-\255]') then return true end
  if s:find('%z') then return false end
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local k
    if c < 0x80 then k = 0
    elseif c >= 0xC2 and c < 0xE0 then k = 1
    elseif c >= 0xE0 and c < 0xF0 then k = 2
    elseif c >= 0xF0 and c < 0xF5 then k = 3
    else return false end
    if i + k > n then return false end
    for j = i + 1, i + k do
      local b = s:byte(j)
      if b < 0x80 or b > 0xBF then return false end
    end
    if k == 2 then
      local b = s:byte(i + 1)
      if (c == 0xE0 and b < 0xA0) or (c == 0xED and b >= 0xA0) then return false end
    elseif k == 3 then
      local b = s:byte(i + 1)
      if (c == 0xF0 and b < 0x90) or (c == 0xF4 and b >= 0x90) then return false end
    end
    i = i + k + 1
  end
  return true
end

function M.string(s) return '"' .. s:gsub('[%c"\\]', esc) .. '"' end

-- Shortest text that reads back as the same double; integers without exponent.
function M.number(x)
  if x ~= x or x == math.huge or x == -math.huge then return nil end
  if x == 0 and 1 / x < 0 then return '-0.0' end
  if x == math.floor(x) and math.abs(x) < 2 ^ 53 then return string.format('%d', x) end
  for _, fmt in ipairs({ '%.15g', '%.16g', '%.17g' }) do
    local s = string.format(fmt, x)
    if tonumber(s) == x then return s end
  end
end

local function is_array(t)
  local n = #t
  if n == 0 then return false end
  local count = 0
  for k in pairs(t) do
    if type(k) ~= 'number' or k < 1 or k > n or k ~= math.floor(k) then return false end
    count = count + 1
  end
  return count == n
end
M.is_array = is_array

-- encode(value, {indent=, sort_keys=true}) for plain data: tables (arrays or string-keyed),
-- strings, finite numbers, booleans, json.null.
function M.encode(v, opts)
  opts = opts or {}
  local indent = opts.indent
  local out = {}
  local seen = {}
  local function put(s) out[#out + 1] = s end
  local function enc(x, depth, where)
    local tx = type(x)
    if tx == 'string' then
      if not M.is_utf8(x) then raise('json.encode: ' .. where .. ' is not valid UTF-8 text') end
      put(M.string(x))
    elseif tx == 'number' then
      local s = M.number(x)
      if not s then raise('json.encode: ' .. where .. ' is ' .. tostring(x) .. ', which JSON cannot represent') end
      put(s)
    elseif tx == 'boolean' then
      put(x and 'true' or 'false')
    elseif x == cjson.null then
      put('null')
    elseif tx == 'table' then
      if seen[x] then raise('json.encode: ' .. where .. ' contains itself (a cycle)') end
      seen[x] = true
      local nl = indent and ('\n' .. string.rep(' ', indent * (depth + 1))) or ''
      local nl_end = indent and ('\n' .. string.rep(' ', indent * depth)) or ''
      local colon = indent and ': ' or ':'
      if is_array(x) then
        put('[')
        for i = 1, #x do
          if i > 1 then put(',') end
          put(nl)
          enc(x[i], depth + 1, where .. '[' .. i .. ']')
        end
        put(nl_end .. ']')
      else
        local keys = {}
        for k in pairs(x) do
          if type(k) ~= 'string' then
            raise(string.format('json.encode: %s has a %s key (%s); JSON objects need string keys', where, type(k),
              tostring(k)))
          end
          keys[#keys + 1] = k
        end
        if opts.sort_keys ~= false then table.sort(keys) end
        put('{')
        for i, k in ipairs(keys) do
          if i > 1 then put(',') end
          put(nl)
          put(M.string(k))
          put(colon)
          enc(x[k], depth + 1, where .. '.' .. k)
        end
        put((#keys > 0 and nl_end or '') .. '}')
      end
      seen[x] = nil
    else
      raise(string.format('json.encode: %s is a %s; expected tables, strings, numbers or booleans', where, tx))
    end
  end
  enc(v, 0, 'value')
  return table.concat(out)
end

-- decode(text, what) -> value; errors name `what` (usually the file)
function M.decode(text, what)
  local ok, v = pcall(cjson.decode, text)
  if not ok then raise(string.format('%s: invalid JSON (%s)', what or 'json.decode', tostring(v):gsub('^.-: ', ''))) end
  return v
end

function M.read(path)
  local f, err = io.open(path, 'rb')
  if not f then raise('json: cannot open ' .. tostring(err)) end
  local s = f:read('*a')
  f:close()
  return M.decode(s, path)
end

function M.write(path, v, opts)
  require('ddpm.io.atomic').write(path, M.encode(v, opts or { indent = 2 }) .. '\n')
end

return M
