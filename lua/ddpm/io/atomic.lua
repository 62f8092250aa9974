-- io/atomic.lua: replace a file atomically (temp file in the same directory, fsync, rename), so a
-- crash or a full disk mid-write never leaves a half-written file where a good one was.
local F = require 'ddpm.ffi'
local C = F.C

local M = {}

-- write(path, data): data is a Lua string
function M.write(path, data)
  if type(path) ~= 'string' then F.raise('write_file_atomic: path must be a string, got ' .. type(path)) end
  if type(data) ~= 'string' then F.raise('write_file_atomic: data must be a string, got ' .. type(data)) end
  if C.ddpm_write_file_atomic(path, data, #data) ~= 0 then F.raise(F.last_error()) end
end

-- read(path) -> the whole file as a string, with an error naming the file
function M.read(path)
  local f, err = io.open(path, 'rb')
  if not f then F.raise('read: cannot open ' .. tostring(err)) end
  local s = f:read('*a')
  f:close()
  return s
end

return M
