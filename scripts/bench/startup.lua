-- startup.lua: seconds from process start to the end of the first UNet forward (batch 1) in
-- ddpm-lua: host start, loading the library and the model code, building the model.  The clock
-- starts at BENCH_T0_NS (CLOCK_REALTIME nanoseconds set by the driver just before it starts this
-- process) or, without it, at the process start time from /proc/self/stat (10 ms resolution).
--   BENCH_T0_NS=$(date +%s%N) ddpm-lua scripts/bench/startup.lua
package.path = (arg[0]:match('^(.*)/[^/]*$') or '.') .. '/?.lua;' .. package.path
local B = require 'common'
local ddpm = B.ddpm
local o = B.parse({}, arg, 'usage: ddpm-lua startup.lua [--threads N]')
B.setup(o)

local emb, unet = B.build(false)
ddpm.no_grad(function()
  local ehs = emb(B.one_hot_of({ 0 })):unsqueeze(1)
  unet(ddpm.randn(1, 3, 16, 16), 10, ehs)
end)
local done = B.realtime_ns()

local function start_ns()
  local v = os.getenv('BENCH_T0_NS')
  if v and tonumber(v) then return tonumber(v), 'driver' end
  local f = assert(io.open('/proc/self/stat'))
  local stat = f:read('*a')
  f:close()
  local fields = {}
  for w in stat:match('%) (.*)$'):gmatch('%S+') do fields[#fields + 1] = w end
  local ticks = tonumber(fields[20]) -- starttime: field 22 of the line, 20 after "(comm)"
  local bt
  for l in io.lines('/proc/stat') do bt = bt or tonumber(l:match('^btime (%d+)')) end
  return (bt + ticks / 100) * 1e9, 'proc-stat'
end
local s, clock = start_ns()
B.emit('startup', 1, { (done - s) / 1e9 }, o, { clock = clock })
