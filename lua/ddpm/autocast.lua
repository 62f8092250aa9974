-- autocast.lua: ddpm.autocast (≈ torch.autocast; also ddpm.amp.autocast): run a function with mixed
-- precision.
--   ddpm.autocast('cuda', {dtype=ddpm.bfloat16}, fn, ...)   -- returns fn's results
--   ddpm.autocast('cpu', {dtype=ddpm.bfloat16}, fn, ...)    -- torch.autocast('cpu'): bfloat16 default
-- Inside, matmul/bmm/linear, scaled_dot_product_attention and conv2d cast their float32 inputs to
-- the autocast dtype (on the CPU: bfloat16 GEMMs and convolutions on AMX / AVX512-BF16, conv2d
-- stays float32 under float16 autocast, attention computes half inputs in float32 and returns the
-- half type); the losses and
-- sum/mean run in float32; group_norm, layer_norm and softmax run in float32 on a GPU (PyTorch's
-- CUDA list) and keep their input's dtype on the CPU (PyTorch's CPU autocast lists them in neither
-- list: a bfloat16 activation comes out bfloat16, computed in float32 with float32 weights and
-- rounded once).  Elementwise ops follow type promotion (bf16 + float32 gives float32).
-- float64 tensors are never cast.  Parameters stay float32 ("master weights"): the casts are
-- differentiable, so their gradients arrive in float32.  Scale float16 losses with
-- ddpm.amp.GradScaler (bfloat16 needs no scaling).  The state is per thread, nests, and is restored
-- when fn raises.  Run backward outside.
local F = require 'ddpm.ffi'
local D = require 'ddpm.dtype'
local C = F.C

local M = {}

local function kind_of(device_type)
  if device_type == 'cuda' or (type(device_type) == 'string' and device_type:match('^cuda:%d+$')) then return 1 end
  if device_type == 'cpu' then return 0 end
  if D.is_device(device_type) then return device_type.id == 0 and 0 or 1 end
  F.raise("autocast: device_type must be 'cuda' or 'cpu', got " .. tostring(device_type))
end

local function pack(...) return { n = select('#', ...), ... } end
local warned = false

local function run(device_type, opts, fn, ...)
  if type(opts) == 'function' then return run(device_type, {}, opts, fn, ...) end
  if opts ~= nil and type(opts) ~= 'table' then F.raise('autocast: options must be a table like {dtype=ddpm.bfloat16}') end
  if type(fn) ~= 'function' then F.raise('autocast: expected a function to run, got ' .. type(fn)) end
  opts = opts or {}
  local kind = kind_of(device_type)
  local enabled = opts.enabled ~= false
  local dtype = -1
  if opts.dtype ~= nil then
    local d = D.resolve(opts.dtype, 'autocast')
    if d.name ~= 'float16' and d.name ~= 'bfloat16' then
      F.raise('autocast: dtype must be ddpm.float16 or ddpm.bfloat16, got ddpm.' .. d.name)
    end
    dtype = d.id
  end
  if enabled and kind == 1 and C.ddpm_cuda_is_available() == 0 then
    if not warned then
      io.stderr:write('ddpm.autocast: CUDA is not available; running without autocast\n')
      warned = true
    end
    enabled = false
  end
  local prev_on, prev_dt = C.ddpm_autocast_enabled(kind), C.ddpm_autocast_dtype(kind)
  if C.ddpm_autocast_set(kind, enabled and 1 or 0, dtype) ~= 0 then F.raise(F.last_error()) end
  local res = pack(pcall(fn, ...))
  C.ddpm_autocast_set(kind, prev_on, prev_dt)
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n)
end

function M.is_enabled(device_type) return C.ddpm_autocast_enabled(kind_of(device_type or 'cuda')) ~= 0 end
function M.get_dtype(device_type) return D.by_id[C.ddpm_autocast_dtype(kind_of(device_type or 'cuda'))] end

return setmetatable(M, { __call = function(_, ...) return run(...) end })
