-- cuda.lua: ddpm.cuda (≈ torch.cuda): devices, memory statistics of the caching allocator,
-- streams and events, pinned host memory, CUDA graphs, and the DDPM_SYNC debugging switch.
-- Every function exists in every build; without CUDA (or without a GPU) the queries answer
-- false/0 and the rest raise "CUDA is not available".
--
-- CUDA graphs (ddpm.cuda.graph(fn) / g:replay()) record the kernels fn launches once and replay
-- them with almost no CPU cost.  Rules:
--   * shapes, dtypes and control flow are frozen at capture; Lua numbers used by fn (learning
--     rates, timesteps, scales) are baked into the kernels: values that change between replays
--     must live in GPU tensors created before capture and updated with :copy_() or :fill_();
--   * tensors created before capture and read by fn must stay alive while the graph is used
--     (keep references to them); tensors fn creates live in the graph's private memory pool and
--     stay valid: each replay overwrites them (g.outputs holds what fn returned);
--   * capture does not run the work: call g:replay() to compute;
--   * no host<->GPU copies, :item(), printing or synchronisation inside fn;
--   * random draws inside fn are fine: every replay draws fresh numbers from the generator, as
--     eager code would;
--   * for a training step, run the step once eagerly first (opts.warmup = 1) so optimizer state
--     and .grad tensors exist outside the graph; zero grads inside fn (zero_grad()), not before.
local F = require 'ddpm.ffi'
local T = require 'ddpm.tensor'
local D = require 'ddpm.dtype'
local ffi, C = F.ffi, F.C
local raise, check = F.raise, T.check

local cuda = {}

local function pack(...) return { n = select('#', ...), ... } end

-- ---- devices ----------------------------------------------------------------------------------------
function cuda.is_available() return C.ddpm_cuda_is_available() ~= 0 end
function cuda.is_built() return C.ddpm_cuda_built() ~= 0 end
function cuda.device_count() return C.ddpm_cuda_device_count() end

-- device arguments as torch.cuda takes them: nil (current), an index, 'cuda:1', a ddpm.device
local function index_of(d, what)
  if d == nil then return -1 end
  if type(d) == 'number' then return d end
  local id = D.parse_device(d, what)
  if id == 0 then raise(what .. ': expected a CUDA device, got cpu') end
  return id - 1
end

local ibuf, ibuf2 = ffi.new('int[1]'), ffi.new('int[1]')
local i64a, i64b = ffi.new('int64_t[1]'), ffi.new('int64_t[1]')

function cuda.current_device()
  check(C.ddpm_cuda_current_device(ibuf))
  return ibuf[0]
end
function cuda.set_device(d) check(C.ddpm_cuda_set_device(index_of(d, 'set_device'))) end
function cuda.get_device_name(d)
  local buf = ffi.new('char[256]')
  check(C.ddpm_cuda_get_device_name(index_of(d, 'get_device_name'), buf, 256))
  return ffi.string(buf)
end
function cuda.get_device_capability(d)
  check(C.ddpm_cuda_get_device_capability(index_of(d, 'get_device_capability'), ibuf, ibuf2))
  return ibuf[0], ibuf2[0]
end
function cuda.get_device_properties(d)
  local idx = index_of(d, 'get_device_properties')
  check(C.ddpm_cuda_get_device_properties(idx, i64a, ibuf))
  local major, minor = cuda.get_device_capability(idx)
  return { name = cuda.get_device_name(idx), total_memory = tonumber(i64a[0]), multi_processor_count = ibuf[0],
    major = major, minor = minor }
end
function cuda.synchronize(d) check(C.ddpm_cuda_synchronize(index_of(d, 'synchronize'))) end
function cuda.mem_get_info(d)
  check(C.ddpm_cuda_mem_get_info(index_of(d, 'mem_get_info'), i64a, i64b))
  return tonumber(i64a[0]), tonumber(i64b[0])
end

-- ---- caching allocator --------------------------------------------------------------------------------
local stat_names = { 'allocated_bytes', 'reserved_bytes', 'peak_allocated_bytes', 'peak_reserved_bytes',
  'active_blocks', 'segments', 'alloc_calls', 'device_mallocs', 'cache_flushes', 'num_ooms', 'memory_limit' }
local stats_buf = ffi.new('int64_t[16]')
local function stats(d, what)
  check(C.ddpm_cuda_memory_stats(index_of(d, what), stats_buf, #stat_names))
  return stats_buf
end
function cuda.memory_allocated(d) return tonumber(stats(d, 'memory_allocated')[0]) end
function cuda.memory_reserved(d) return tonumber(stats(d, 'memory_reserved')[1]) end
function cuda.max_memory_allocated(d) return tonumber(stats(d, 'max_memory_allocated')[2]) end
function cuda.max_memory_reserved(d) return tonumber(stats(d, 'max_memory_reserved')[3]) end
cuda.memory_cached, cuda.max_memory_cached = cuda.memory_reserved, cuda.max_memory_reserved
-- memory_stats(): a table with the names above plus PyTorch's keys for the main counters
function cuda.memory_stats(d)
  local s = stats(d, 'memory_stats')
  local r = {}
  for i, k in ipairs(stat_names) do r[k] = tonumber(s[i - 1]) end
  r['allocated_bytes.all.current'], r['allocated_bytes.all.peak'] = r.allocated_bytes, r.peak_allocated_bytes
  r['reserved_bytes.all.current'], r['reserved_bytes.all.peak'] = r.reserved_bytes, r.peak_reserved_bytes
  r['num_alloc_retries'] = r.cache_flushes
  return r
end
function cuda.reset_peak_memory_stats(d) check(C.ddpm_cuda_reset_peak_memory_stats(index_of(d, 'reset_peak_memory_stats'))) end
cuda.reset_max_memory_allocated = cuda.reset_peak_memory_stats
-- Give cached, unused blocks back to the driver (other processes see the memory again).
function cuda.empty_cache() check(C.ddpm_cuda_empty_cache()) end
-- An artificial cap on what the allocator reserves (bytes; 0 or nil removes it): tests use it to
-- exercise out-of-memory handling, users to share a GPU.
function cuda.set_memory_limit(bytes, d)
  check(C.ddpm_cuda_set_memory_limit(index_of(d, 'set_memory_limit'), bytes or 0))
end
function cuda.set_per_process_memory_fraction(fraction, d)
  if type(fraction) ~= 'number' or fraction < 0 or fraction > 1 then
    raise('set_per_process_memory_fraction: fraction must be a number in [0, 1], got ' .. tostring(fraction))
  end
  local _, total = cuda.mem_get_info(d)
  cuda.set_memory_limit(math.floor(total * fraction), d)
end

-- ---- switches ---------------------------------------------------------------------------------------------
local FLAG_SYNC = 3
-- DDPM_SYNC=1 (or set_sync(true)): synchronise and check after every op, so an asynchronous CUDA
-- error is reported at the op that caused it.  Slow; for debugging.
function cuda.set_sync(on) check(C.ddpm_cuda_set_flag(FLAG_SYNC, on and 1 or 0)) end
function cuda.get_sync() return C.ddpm_cuda_get_flag(FLAG_SYNC) ~= 0 end

-- one generator serves every device (counter-based Philox streams are device independent)
function cuda.manual_seed(seed) return require('ddpm').manual_seed(seed) end
cuda.manual_seed_all = cuda.manual_seed
function cuda.initial_seed() return require('ddpm').initial_seed() end

-- ---- streams and events --------------------------------------------------------------------------------
local Stream = {}
Stream.__index = Stream
Stream.__tostring = function(s)
  return string.format('ddpm.cuda.Stream(device=cuda:%d%s)', s.device_index, s.handle == nil and ', default' or '')
end
local registry = setmetatable({}, { __mode = 'v' }) -- handle address -> Stream object
local defaults = {}

local function wrap_stream(handle, device_index)
  if handle == nil then
    local s = defaults[device_index]
    if not s then
      s = setmetatable({ handle = nil, device_index = device_index }, Stream)
      defaults[device_index] = s
    end
    return s
  end
  local key = tostring(ffi.cast('uintptr_t', handle))
  local s = registry[key]
  if not s then
    s = setmetatable({ handle = handle, device_index = device_index }, Stream)
    registry[key] = s
  end
  return s
end

-- Stream({device=, priority=}): a new stream (lower priority numbers run first, as in PyTorch)
function cuda.Stream(opts)
  opts = opts or {}
  local p = ffi.new('ddpm_cuda_stream*[1]')
  check(C.ddpm_cuda_stream_new(p, index_of(opts.device, 'Stream'), opts.priority or 0))
  local h = ffi.gc(p[0], C.ddpm_cuda_stream_free)
  local s = setmetatable({ handle = h, device_index = C.ddpm_cuda_stream_device(h) }, Stream)
  registry[tostring(ffi.cast('uintptr_t', h))] = s
  return s
end
function Stream:synchronize() check(C.ddpm_cuda_stream_synchronize(self.handle)) end
function Stream:query()
  check(C.ddpm_cuda_stream_query(self.handle, ibuf))
  return ibuf[0] ~= 0
end
function Stream:wait_stream(other)
  if getmetatable(other) ~= Stream then raise('wait_stream: expected a ddpm.cuda.Stream') end
  check(C.ddpm_cuda_stream_wait_stream(self.handle, other.handle))
end
function Stream:wait_event(ev) check(C.ddpm_cuda_stream_wait_event(self.handle, ev.handle)) end
function Stream:record_event(ev)
  ev = ev or cuda.Event()
  ev:record(self)
  return ev
end

local current = {} -- keeps the current stream objects alive
function cuda.current_stream(d)
  local idx = index_of(d, 'current_stream')
  local p = ffi.new('ddpm_cuda_stream*[1]')
  check(C.ddpm_cuda_current_stream(idx, p))
  if idx < 0 then idx = cuda.current_device() end
  return wrap_stream(p[0] ~= nil and p[0] or nil, idx)
end
function cuda.default_stream(d)
  local idx = index_of(d, 'default_stream')
  if idx < 0 then idx = cuda.current_device() end
  return wrap_stream(nil, idx)
end
function cuda.set_stream(s)
  if getmetatable(s) ~= Stream then raise('set_stream: expected a ddpm.cuda.Stream') end
  if s.handle == nil then
    local prev = cuda.current_device()
    cuda.set_device(s.device_index)
    check(C.ddpm_cuda_set_stream(nil))
    cuda.set_device(prev)
  else
    check(C.ddpm_cuda_set_stream(s.handle))
  end
  current[s.device_index] = s
end
-- stream(s, fn, ...): run fn with s as the current stream (≈ with torch.cuda.stream(s)); the
-- previous stream is restored even when fn raises.
function cuda.stream(s, fn, ...)
  if type(fn) ~= 'function' then raise('stream: expected a function to run, got ' .. type(fn)) end
  local prev = cuda.current_stream(s.device_index)
  cuda.set_stream(s)
  local res = pack(pcall(fn, ...))
  cuda.set_stream(prev)
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n)
end

local Event = {}
Event.__index = Event
function cuda.Event(opts)
  local p = ffi.new('ddpm_cuda_event*[1]')
  check(C.ddpm_cuda_event_new(p, opts and opts.enable_timing and 1 or 0))
  return setmetatable({ handle = ffi.gc(p[0], C.ddpm_cuda_event_free) }, Event)
end
function Event:record(s) check(C.ddpm_cuda_event_record(self.handle, s and s.handle or nil)) end
function Event:synchronize() check(C.ddpm_cuda_event_synchronize(self.handle)) end
function Event:query()
  check(C.ddpm_cuda_event_query(self.handle, ibuf))
  return ibuf[0] ~= 0
end
function Event:wait(s) check(C.ddpm_cuda_stream_wait_event(s and s.handle or nil, self.handle)) end
-- milliseconds between this event and a later one
function Event:elapsed_time(e)
  local ms = ffi.new('double[1]')
  check(C.ddpm_cuda_event_elapsed_ms(self.handle, e.handle, ms))
  return ms[0]
end

-- t:record_stream(s): t's memory is also used on stream s; the allocator reuses it only after the
-- work queued there so far is done.
T.methods.record_stream = function(t, s)
  if getmetatable(s) ~= Stream then raise('record_stream: expected a ddpm.cuda.Stream') end
  check(C.ddpm_tensor_record_stream(t, s.handle))
end

-- ---- pinned memory ----------------------------------------------------------------------------------
function cuda.pin_memory(t)
  T.need_tensor(t, 'input', 'pin_memory')
  return T.call1(C.ddpm_pin_memory, t)
end
function cuda.is_pinned(t) return C.ddpm_tensor_is_pinned(t) ~= 0 end

-- ---- graphs ---------------------------------------------------------------------------------------------
local Graph = {}
Graph.__index = Graph
-- CUDAGraph(): PyTorch's explicit form (capture_begin / capture_end / replay / reset)
function cuda.CUDAGraph()
  local p = ffi.new('ddpm_cuda_graph*[1]')
  check(C.ddpm_cuda_graph_new(p))
  return setmetatable({ handle = ffi.gc(p[0], C.ddpm_cuda_graph_free), outputs = {} }, Graph)
end
function Graph:capture_begin() check(C.ddpm_cuda_graph_capture_begin(self.handle)) end
function Graph:capture_end() check(C.ddpm_cuda_graph_capture_end(self.handle)) end
function Graph:replay() check(C.ddpm_cuda_graph_replay(self.handle)) end
-- drop the recorded work and give the graph's memory pool back to the allocator
function Graph:reset()
  check(C.ddpm_cuda_graph_reset(self.handle))
  self.outputs = {}
end
function cuda.is_current_stream_capturing() return C.ddpm_cuda_is_capturing() ~= 0 end

-- graph(fn, {warmup=0}, ...): run fn warmup times eagerly, then capture one call of fn(...).
-- Returns the graph (g.outputs = what the captured call returned) followed by those outputs.
function cuda.graph(fn, opts, ...)
  if type(fn) ~= 'function' then raise('graph: expected a function to capture, got ' .. type(fn)) end
  if opts ~= nil and type(opts) ~= 'table' then raise('graph: options must be a table like {warmup=1}') end
  for _ = 1, (opts and opts.warmup or 0) do fn(...) end
  if (opts and opts.warmup or 0) > 0 then cuda.synchronize() end
  local g = cuda.CUDAGraph()
  g:capture_begin()
  local res = pack(pcall(fn, ...))
  local ok_end, err_end = pcall(Graph.capture_end, g)
  if not res[1] then
    pcall(Graph.reset, g)
    error(res[2], 0)
  end
  if not ok_end then error(err_end, 0) end
  g.outputs = { unpack(res, 2, res.n) }
  return g, unpack(res, 2, res.n)
end

-- CUDA bytes count towards the Lua GC's view of native memory
T.set_cuda_devices(cuda.device_count())

return cuda
