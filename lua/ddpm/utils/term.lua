-- term.lua: what console output needs to know: is a stream a terminal, how wide, a wall clock.
local ffi = require 'ffi'

-- libc entry points under names private to this file (asm labels), so no other module's cdef of
-- isatty or clock_gettime can clash with these declarations.
pcall(ffi.cdef, [[
int ddpm_term_isatty(int fd) __asm__("isatty");
int ddpm_term_ioctl(int fd, unsigned long request, ...) __asm__("ioctl");
int ddpm_term_clock_gettime(int clock, int64_t *ts) __asm__("clock_gettime");
]])
local C = ffi.C

local M = {}

local TIOCGWINSZ = 0x5413 -- Linux
local CLOCK_MONOTONIC = 1

-- file descriptor of a standard Lua file handle (or a number), nil for anything else
function M.fd(file)
  if type(file) == 'number' then return file end
  if file == io.stdout then return 1 end
  if file == io.stderr then return 2 end
  if file == io.stdin then return 0 end
  return nil
end

function M.isatty(file)
  local fd = M.fd(file)
  return fd ~= nil and C.ddpm_term_isatty(fd) == 1
end

-- columns of the terminal behind file; COLUMNS, then 80, when it cannot tell
function M.width(file)
  local fd = M.fd(file)
  if fd then
    local ws = ffi.new('uint16_t[4]')
    if C.ddpm_term_ioctl(fd, TIOCGWINSZ, ws) == 0 and ws[1] > 0 then return ws[1] end
  end
  return tonumber(os.getenv('COLUMNS')) or 80
end

-- seconds on a monotonic wall clock (os.clock is CPU time, which multi-threaded kernels inflate)
local ts = ffi.new('int64_t[2]')
function M.now()
  C.ddpm_term_clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts[0]) + tonumber(ts[1]) * 1e-9
end

-- whether the locale promises UTF-8 output (for block characters)
function M.utf8()
  local loc = os.getenv('LC_ALL')
  if not loc or loc == '' then loc = os.getenv('LC_CTYPE') end
  if not loc or loc == '' then loc = os.getenv('LANG') end
  return loc ~= nil and loc:lower():gsub('-', ''):find('utf8') ~= nil
end

return M
