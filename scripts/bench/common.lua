-- common.lua: shared setup of the ddpm-lua benchmarks: options, thread settings, the reference
-- job's models (label net + UNet2DConditionModel + DDPMScheduler), synthetic data, clocks, peak
-- memory and the JSON lines that run.sh compares with tests/peer/*.py (same names and fields).
local ffi = require 'ffi'
local ddpm = require 'ddpm'
local json = require 'ddpm.io.json'

ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *ts);
long sysconf(int name);
]]
local CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID = 0, 1, 2
local SC_NPROCESSORS_ONLN = 84

local M = {}
M.ddpm = ddpm
M.NUM_CLASSES = 5
M.TRAIN_TIMESTEPS = 200
-- shared/fixtures/seed/unet/config.json (diffusers defaults for every other key)
M.UNET_CONFIG = {
  sample_size = 16, in_channels = 3, out_channels = 3, layers_per_block = 2,
  block_out_channels = { 64, 128 },
  down_block_types = { 'DownBlock2D', 'CrossAttnDownBlock2D' },
  up_block_types = { 'CrossAttnUpBlock2D', 'UpBlock2D' },
  encoder_hid_dim = 64,
}

local ts = ffi.new('bench_timespec')
local function clock(id)
  ffi.C.clock_gettime(id, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end
function M.now() return clock(CLOCK_MONOTONIC) end
function M.cpu_time() return clock(CLOCK_PROCESS_CPUTIME_ID) end
function M.realtime_ns()
  ffi.C.clock_gettime(CLOCK_REALTIME, ts)
  return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
end

-- Peak resident set (VmHWM) in MiB: the same quantity as getrusage's ru_maxrss on Linux.
function M.peak_rss_mb()
  local f = io.open('/proc/self/status', 'r')
  if not f then return nil end
  local s = f:read('*a')
  f:close()
  local kb = s:match('VmHWM:%s*(%d+)%s*kB')
  return kb and tonumber(kb) / 1024 or nil
end

-- parse(defaults, argv) -> options: --name value, --flag (booleans), --no-flag
function M.parse(defaults, argv, usage)
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  o.threads = o.threads or tonumber(ffi.C.sysconf(SC_NPROCESSORS_ONLN))
  o.warmup = o.warmup or 2
  o.seed = o.seed or 0
  local i = 1
  while argv[i] do
    local a = argv[i]
    local key = a:match('^%-%-([%w-]+)$')
    if not key then error(string.format('%s: unexpected argument %q\n%s', arg and arg[0] or 'bench', a, usage or ''), 0) end
    key = key:gsub('-', '_')
    if a == '--help' then io.stdout:write(usage or '', '\n') os.exit(0) end
    local neg = key:match('^no_(.*)$')
    if neg and type(o[neg]) == 'boolean' then
      o[neg] = false
      i = i + 1
    elseif type(o[key]) == 'boolean' then
      o[key] = true
      i = i + 1
    elseif o[key] ~= nil then
      local v = argv[i + 1]
      if v == nil then error('option --' .. key .. ' needs a value', 0) end
      o[key] = type(o[key]) == 'number' and assert(tonumber(v), '--' .. key .. ' expects a number') or v
      i = i + 2
    else
      error(string.format('unknown option %s\n%s', a, usage or ''), 0)
    end
  end
  return o
end

function M.setup(o)
  ddpm.set_num_threads(o.threads)
  ddpm.manual_seed(o.seed)
end

-- build(train) -> label net, UNet, scheduler of the reference job
function M.build(train)
  local nn = ddpm.nn
  local emb = nn.Sequential(nn.Linear(M.NUM_CLASSES, 64), nn.GELU(), nn.Linear(64, 64))
  local unet = ddpm.models.UNet2DConditionModel(M.UNET_CONFIG)
  local sched = ddpm.schedulers.DDPMScheduler { num_train_timesteps = M.TRAIN_TIMESTEPS }
  emb:train(train)
  unet:train(train)
  return emb, unet, sched
end

-- Images uniform in [-1, 1] and random one-hot labels: no data set needed.
function M.synthetic_batch(batch)
  local x = ddpm.rand(batch, 3, 16, 16) * 2 - 1
  local labels = ddpm.nn.functional.one_hot(ddpm.randint(0, M.NUM_CLASSES, { batch }), M.NUM_CLASSES):float()
  return x, labels
end

function M.one_hot_of(list)
  return ddpm.nn.functional.one_hot(ddpm.tensor(list, { dtype = ddpm.int64 }), M.NUM_CLASSES):float()
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) / 2] end
  return (s[n / 2] + s[n / 2 + 1]) / 2
end
M.median = median

function M.versions()
  return { impl = 'ddpm-lua', ddpm = ddpm.__version__ or ddpm.version, luajit = jit.version }
end

-- emit(name, batch, times, o, extra): one JSON line; seconds is the median of the repetitions.
function M.emit(name, batch, times, o, extra)
  local med = median(times)
  local mn, mx = math.huge, -math.huge
  for _, v in ipairs(times) do mn, mx = math.min(mn, v), math.max(mx, v) end
  local rec = {
    name = name, impl = 'ours', batch = batch, seconds = med,
    images_per_s = (batch and med > 0) and batch / med or json.null,
    reps = #times, times = times, min = mn, max = mx,
    peak_rss_mb = M.peak_rss_mb(), threads = o.threads, versions = M.versions(),
  }
  for k, v in pairs(extra or {}) do rec[k] = v end
  io.stdout:write(json.encode(rec), '\n')
  io.stdout:flush()
  return rec
end

-- A measurement the engine cannot run yet (e.g. a missing feature): a line saying so.
function M.unsupported(name, batch, o, why)
  io.stdout:write(json.encode({ name = name, impl = 'ours', batch = batch, unsupported = why,
    threads = o.threads, versions = M.versions() }), '\n')
  io.stdout:flush()
end

return M
