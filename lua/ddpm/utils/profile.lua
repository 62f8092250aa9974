-- utils/profile.lua: where time goes, per op: calls and self seconds of every kernel the engine
-- dispatched while profiling was on (engine/src/profile.c), and the time outside kernels (Lua,
-- autograd bookkeeping, allocation).  DDPM_PROFILE=1 turns it on for a whole process and prints
-- the table at exit; from Lua:
--
--   local profile = require 'ddpm.utils.profile'
--   local report, loss = profile(function() return train_step() end)   -- or profile.profile(fn)
--   print(report)            -- table sorted by time; report.ops[i] = {name, calls, seconds, share}
--   profile.enable(true) ... profile.enable(false); print(profile.report())   -- manual control
local ffi = require 'ffi'
local F = require 'ddpm.ffi'
local C = F.C

local M = {}
local function pack(...) return { n = select('#', ...), ... } end
local calls_buf, secs_buf = ffi.new('int64_t[1]'), ffi.new('double[1]')

-- snapshot() -> {calls = {[op] = n}, seconds = {[op] = s}, wall = s}: the running totals
local function snapshot()
  local calls, secs = {}, {}
  for op = 0, C.ddpm_op_count() - 1 do
    F.check(C.ddpm_profile_read(op, calls_buf, secs_buf))
    calls[op], secs[op] = tonumber(calls_buf[0]), secs_buf[0]
  end
  return { calls = calls, seconds = secs, wall = C.ddpm_profile_wall() }
end
M.snapshot = snapshot

local Report = {}
Report.__index = Report

-- format(): the table as text, longest first
function Report:format(limit)
  local lines = { string.format('%-34s %9s %10s %7s %9s', 'op', 'calls', 'seconds', 'share', 'ms/call') }
  for i, r in ipairs(self.ops) do
    if limit and i > limit then break end
    lines[#lines + 1] = string.format('%-34s %9d %10.4f %6.1f%% %9.3f', r.name, r.calls, r.seconds, 100 * r.share,
      1e3 * r.seconds / r.calls)
  end
  lines[#lines + 1] = string.format('%-34s %9s %10.4f %6.1f%%', '(outside kernels)', '', self.outside,
    self.wall > 0 and 100 * self.outside / self.wall or 0)
  lines[#lines + 1] = string.format('%-34s %9s %10.4f', '(wall)', '', self.wall)
  return table.concat(lines, '\n')
end
Report.__tostring = Report.format

-- report(opts) -> Report of the totals since `since` (a snapshot; default: since the last reset).
-- opts.wall overrides the wall time the shares are taken of (e.g. the timed steps only).
function M.report(opts, since)
  opts = opts or {}
  local now = snapshot()
  local ops, kernels = {}, 0
  for op, n in pairs(now.calls) do
    local dn = n - (since and since.calls[op] or 0)
    if dn > 0 then
      local s = now.seconds[op] - (since and since.seconds[op] or 0)
      ops[#ops + 1] = { name = ffi.string(C.ddpm_op_name(op)), calls = dn, seconds = s }
      kernels = kernels + s
    end
  end
  local wall = opts.wall or (now.wall - (since and since.wall or 0))
  for _, r in ipairs(ops) do r.share = wall > 0 and r.seconds / wall or 0 end
  table.sort(ops, function(a, b) return a.seconds > b.seconds end)
  return setmetatable({ ops = ops, kernels = kernels, wall = wall, outside = wall - kernels, steps = opts.steps },
    Report)
end

-- enable(on) -> previous state
function M.enable(on) return C.ddpm_profile_enable(on and 1 or 0) ~= 0 end
function M.enabled()
  local was = C.ddpm_profile_enable(1)
  C.ddpm_profile_enable(was)
  return was ~= 0
end
function M.reset() C.ddpm_profile_reset() end

-- profile(fn, ...) -> report, fn's results: profiles one call without disturbing the running
-- totals (DDPM_PROFILE=1 keeps counting across it).
function M.profile(fn, ...)
  if type(fn) ~= 'function' then F.raise('profile: expected a function to run, got ' .. type(fn)) end
  local was = M.enable(true)
  local before = snapshot()
  local t0 = C.ddpm_profile_wall()
  local res
  local ok, err = pcall(function(...) res = pack(fn(...)) end, ...)
  local wall = C.ddpm_profile_wall() - t0
  local rep = M.report({ wall = wall }, before)
  M.enable(was)
  if not ok then error(err, 0) end
  return rep, unpack(res, 1, res.n)
end

return setmetatable(M, { __call = function(_, fn, ...) return M.profile(fn, ...) end })
