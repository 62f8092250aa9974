-- core_kernels.lua: timings of the common float32 elementwise and reduction kernels (same-shape
-- and broadcast binary ops, sums over all dims and over (0, 2, 3)), single- and multi-threaded,
-- reported as GB/s so they can be compared with memory bandwidth.  Not a test: no thresholds.
-- usage: ddpm-lua scripts/bench/core_kernels.lua [N C H W] [repeats]
local ddpm = require 'ddpm'
local ffi = require 'ffi'
ffi.cdef 'int clock_gettime(int clk, struct timespec *ts); struct timespec { long tv_sec; long tv_nsec; };'
local ts = ffi.new('struct timespec')
local function now()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local N, Cc, H, W = tonumber(arg[1] or 128), tonumber(arg[2] or 64), tonumber(arg[3] or 16), tonumber(arg[4] or 16)
local reps = tonumber(arg[5] or 20)
local x = ddpm.randn(N, Cc, H, W)
local y = ddpm.randn(N, Cc, H, W)
local ch = ddpm.randn(1, Cc, 1, 1)
local s0 = ddpm.tensor(2.5)
local numel = x:numel()

local function bench(name, bytes, fn)
  fn()
  collectgarbage('collect')
  local t0 = now()
  for _ = 1, reps do fn() end
  local dt = (now() - t0) / reps
  io.write(string.format('  %-34s %8.3f ms  %6.1f GB/s\n', name, dt * 1e3, bytes / dt / 1e9))
end

local cases = {
  { 'x + y (same shape)', 12, function() return x + y end },
  { 'x * 2.5 (number)', 8, function() return x * 2.5 end },
  { 'x * s (0-d tensor)', 8, function() return x * s0 end },
  { 'x + c  ([N,C,H,W] + [1,C,1,1])', 8, function() return x + ch end },
  { 'x:exp()', 8, function() return x:exp() end },
  { 'x:sum()', 4, function() return x:sum() end },
  { 'x:sum({0, 2, 3})', 4, function() return x:sum({ 0, 2, 3 }) end },
  { 'x:sum(3)', 4, function() return x:sum(3) end },
  { 'x:sum(0)', 4, function() return x:sum(0) end },
  { 'x:amax()', 4, function() return x:amax() end },
  { 'x:mean({1, 2, 3}, true)', 4, function() return x:mean({ 1, 2, 3 }, true) end },
  { 'x:permute(0,2,3,1):contiguous()', 8, function() return x:permute(0, 2, 3, 1):contiguous() end },
}
local nt = ddpm.get_num_threads()
print(string.format('float32 [%d, %d, %d, %d] (%.1f MB), %d repeats', N, Cc, H, W, numel * 4 / 2 ^ 20, reps))
for _, threads in ipairs({ 1, nt }) do
  ddpm.set_num_threads(threads)
  print(string.format('%d thread%s:', threads, threads == 1 and '' or 's'))
  for _, c in ipairs(cases) do bench(c[1], c[2] * numel, c[3]) end
  if nt == 1 then break end
end
ddpm.set_num_threads(nt)
