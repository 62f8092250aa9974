-- conv_shapes.lua: GFLOP/s of conv2d forward, input gradient and weight gradient at every conv
-- shape of the reference UNet (batch as given), from the per-op profiler in CPU time, so a
-- kernel change can be measured on a busy machine.  DDPM_CPU_ISA=generic gives the
-- portable path for an A/B comparison.
--   DDPM_PROFILE_CLOCK=cpu ddpm-lua scripts/bench/conv_shapes.lua [--batch 32] [--reps 5] [--threads N]
package.path = (arg[0]:match('^(.*)/[^/]*$') or '.') .. '/?.lua;' .. package.path
local B = require 'common'
local ddpm = B.ddpm
local F = ddpm.nn.functional
local prof = require 'ddpm.utils.profile'
local o = B.parse({ batch = 32, reps = 5, only = '' }, arg,
  'usage: ddpm-lua conv_shapes.lua [--batch 32] [--reps 5] [--threads N] [--only 128x128x8]')
B.setup(o)

-- {C, O, H, k, stride, count in one UNet forward}
local shapes = {
  { 128, 128, 8, 3, 1, 10 }, { 64, 64, 16, 3, 1, 7 }, { 256, 128, 8, 3, 1, 2 }, { 128, 128, 16, 3, 1, 1 },
  { 128, 64, 16, 3, 1, 2 }, { 192, 64, 16, 3, 1, 1 }, { 192, 128, 8, 3, 1, 1 }, { 64, 128, 8, 3, 1, 1 },
  { 64, 64, 16, 3, 2, 1 }, { 3, 64, 16, 3, 1, 1 }, { 64, 3, 16, 3, 1, 1 },
  { 128, 128, 8, 1, 1, 12 }, { 256, 128, 8, 1, 1, 2 }, { 128, 64, 16, 1, 1, 2 }, { 192, 64, 16, 1, 1, 1 },
}
local names = { conv2d = 'fwd', conv2d_backward_input = 'bwd-in', conv2d_backward_weight = 'bwd-w' }
print(string.format('batch %d, %d threads, GFLOP/s per CPU-second (%s kernels)', o.batch, o.threads,
  (os.getenv('DDPM_CPU_ISA') == 'generic' or os.getenv('DDPM_CPU_KERNELS') == 'reference') and 'generic' or 'default'))
print(string.format('%-24s %8s %8s %8s %10s', 'shape', 'fwd', 'bwd-in', 'bwd-w', 'ms/fwd+bwd'))
local total = 0
for _, s in ipairs(shapes) do
  local C, O, H, k, st, count = unpack(s)
  local label = string.format('%dx%dx%d k%d s%d', C, O, H, k, st)
  if o.only == '' or label:find(o.only, 1, true) then
    local pad = (k - 1) / 2
    local x = ddpm.randn(o.batch, C, H, H):requires_grad_(true)
    local w = (ddpm.randn(O, C, k, k) * 0.05):requires_grad_(true)
    local b = ddpm.zeros(O):requires_grad_(true)
    local Ho = math.floor((H + 2 * pad - k) / st) + 1
    local g = ddpm.randn(o.batch, O, Ho, Ho)
    local function once()
      x.grad, w.grad, b.grad = nil, nil, nil
      F.conv2d(x, w, b, st, pad):backward(g)
    end
    once()
    prof.enable(true)
    local since = prof.snapshot()
    for _ = 1, o.reps do once() end
    local r = prof.report({}, since)
    prof.enable(false)
    local flops = 2 * o.batch * O * Ho * Ho * C * k * k
    local gf, sec = {}, 0
    for _, op in ipairs(r.ops) do
      if names[op.name] then
        gf[names[op.name]] = flops * op.calls / op.seconds / 1e9
        sec = sec + op.seconds / o.reps
      end
    end
    total = total + sec * count
    print(string.format('%-24s %8.1f %8.1f %8.1f %10.2f', label, gf.fwd or 0, gf['bwd-in'] or 0, gf['bwd-w'] or 0,
      sec * 1e3))
  end
end
print(string.format('all convs of one UNet forward+backward: %.1f ms', total * 1e3))
