-- ffi.lua: cdefs ddpm.h's FFI region once, loads libddpm, checks the ABI, and turns status
-- codes into Lua errors that point at the user's line (the first frame outside this package).
local ffi = require 'ffi'

ffi.cdef(require 'ddpm.cdef')

local ABI_VERSION = 1

local C
if pcall(function() return ffi.C.ddpm_abi_version end) then
  C = ffi.C -- inside ddpm-lua, which links libddpm
else
  local path = os.getenv('DDPM_LIB')
  if not path then
    local ok, cfg = pcall(require, 'ddpm.build_config')
    path = ok and cfg.libpath or 'ddpm'
  end
  -- libddpm must never be unloaded: its OpenMP worker threads outlive every call, and a
  -- dlclose (when the clib object below is collected, e.g. at lua_close or when a test runner
  -- resets package.loaded) would unmap code they are still running.  RTLD_NODELETE pins it.
  pcall(ffi.cdef, 'void *dlopen(const char *file, int mode);')
  local file = path:find('/', 1, true) and path or ('lib' .. path .. '.so')
  pcall(function() return ffi.C.dlopen(file, 0x1002) end) -- RTLD_NOW | RTLD_NODELETE (glibc)
  C = ffi.load(path)
  debug.getregistry().ddpm_clib = C
end
if C.ddpm_abi_version() ~= ABI_VERSION then
  error(string.format('ddpm: libddpm ABI %d does not match the Lua package (ABI %d); rebuild or reinstall',
    C.ddpm_abi_version(), ABI_VERSION), 2)
end

local M = { C = C, ffi = ffi }

-- Frames whose source file lives in this package are ours; errors are reported at the first
-- frame that is not, i.e. the user's script line.
local here = debug.getinfo(1, 'S').source
local pkg_prefix = here:match('^(@.*[/\\]ddpm[/\\])') or '@ddpm/'
local function is_internal(src)
  return src:sub(1, #pkg_prefix) == pkg_prefix or src == '=[C]'
end

function M.raise(msg)
  local level = 3
  while true do
    local info = debug.getinfo(level, 'S')
    if not info then level = 2 break end
    if not is_internal(info.source) then break end
    level = level + 1
  end
  error(msg, level)
end

function M.last_error()
  return ffi.string(C.ddpm_last_error())
end

local DDPM_ERR_OOM = 5
M.outp = ffi.new('ddpm_tensor*[1]')
M.outp2 = ffi.new('ddpm_tensor*[1]')
M.i64 = ffi.new('int64_t[8]')
M.i64b = ffi.new('int64_t[8]')

-- On out-of-memory the Lua GC may be holding dead tensors: collect and try once more.
function M.retry(st, fn, ...)
  if st == DDPM_ERR_OOM then
    collectgarbage('collect')
    collectgarbage('collect')
    st = fn(...)
    if st == 0 then return end
  end
  M.raise(M.last_error())
end

function M.check(st)
  if st ~= 0 then M.raise(M.last_error()) end
end

return M
