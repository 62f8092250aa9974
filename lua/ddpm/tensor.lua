-- tensor.lua: the tensor type: an ffi.metatype over the opaque ddpm_tensor handle, with
-- PyTorch's method names, operators and 0-based dims.  (LuaJIT indexes cdata pointers with
-- numbers itself, so t[i] is not available: use t:select(0, i).)  Other modules add methods to
-- `Tensor.methods` (e.g. nn.functional adds t:softmax()).
local F = require 'ddpm.ffi'
local D = require 'ddpm.dtype'
local ffi, C = F.ffi, F.C
local raise, outp, outp2 = F.raise, F.outp, F.outp2

local M = {}
local methods = {}
M.methods = methods

-- ---- wrapping handles and native-memory pressure -------------------------------------------
-- The Lua GC cannot see native memory, and a dead temporary keeps its buffer until a collection
-- runs its finalizer.  Left alone, a loop of tensor ops walks through hundreds of MB of fresh
-- pages (a page fault per 4 KB, and cold caches) before the GC wakes up.  So every new tensor
-- checks the bytes the engine holds, and a full collection runs once they exceed what was live
-- after the previous one by a budget (a tenth of that, at least GC_BUDGET_MIN); the host
-- allocator then hands the freed buffers out again while they are still mapped and warm.  A full
-- collection of the UNet's Lua heap takes ~0.3 ms, so collecting every ~10% of growth costs
-- nothing measurable, while half (the first setting) let ~450 MB of dead temporaries pile up on
-- top of the ~0.9 GB a batch-128 training step's graph holds.
local release = C.ddpm_tensor_release
local memory_allocated = C.ddpm_memory_allocated
local GC_BUDGET_MIN = 48 * 2 ^ 20
local GC_BUDGET_FRAC = 0.1
local next_gc = GC_BUDGET_MIN
local cuda_devices = 0
function M.set_cuda_devices(n) cuda_devices = n end
function M.set_gc_budget(bytes) GC_BUDGET_MIN = bytes end
local function live_bytes()
  local b = tonumber(memory_allocated(0))
  for d = 1, cuda_devices do b = b + tonumber(memory_allocated(d)) end
  return b
end
local function pressure()
  if live_bytes() <= next_gc then return end
  collectgarbage('collect')
  local after = live_bytes()
  next_gc = after + math.max(GC_BUDGET_MIN, after * GC_BUDGET_FRAC)
end
-- Tensors are `ddpm_tensor &` cdata, not pointers: LuaJIT's JIT (releases before 2023, e.g.
-- Debian 12's) compiles `pointer + number` and `pointer - number` as pointer arithmetic even
-- for an incomplete struct, so `t + 1` in a hot loop would yield a wild pointer instead of
-- calling __add.  References always reach the metamethods, and convert to ddpm_tensor* in
-- every C call.  (tests/lua/tensor_ops_spec.lua checks this under the JIT.)
local tensor_ref = ffi.typeof('ddpm_tensor &')
local tensor_ptr = ffi.typeof('ddpm_tensor *')
local cast, gc = ffi.cast, ffi.gc
local function wrap(p)
  pressure()
  return gc(cast(tensor_ref, p), release)
end
M.wrap = wrap

local istype = ffi.istype
local function is_tensor(x)
  return type(x) == 'cdata' and (istype(tensor_ref, x) or istype(tensor_ptr, x))
end
M.is_tensor = is_tensor
-- The handle's address as a number: the same for every Lua object wrapping one tensor (t.grad
-- returns a new wrapper each time).  ffi.cast('intptr_t', t) does not work on a reference.
local voidp, intptr = ffi.typeof('void *'), ffi.typeof('intptr_t')
function M.address(t) return tonumber(cast(intptr, cast(voidp, t))) end

-- ---- calling the C API ---------------------------------------------------------------------------
local retry = F.retry
local function call1(fn, a)
  local st = fn(outp, a)
  if st ~= 0 then retry(st, fn, outp, a) end
  return wrap(outp[0])
end
local function call2(fn, a, b)
  local st = fn(outp, a, b)
  if st ~= 0 then retry(st, fn, outp, a, b) end
  return wrap(outp[0])
end
local function call3(fn, a, b, c)
  local st = fn(outp, a, b, c)
  if st ~= 0 then retry(st, fn, outp, a, b, c) end
  return wrap(outp[0])
end
local function call4(fn, a, b, c, d)
  local st = fn(outp, a, b, c, d)
  if st ~= 0 then retry(st, fn, outp, a, b, c, d) end
  return wrap(outp[0])
end
local function call5(fn, a, b, c, d, e)
  local st = fn(outp, a, b, c, d, e)
  if st ~= 0 then retry(st, fn, outp, a, b, c, d, e) end
  return wrap(outp[0])
end
local function call6(fn, a, b, c, d, e, f)
  local st = fn(outp, a, b, c, d, e, f)
  if st ~= 0 then retry(st, fn, outp, a, b, c, d, e, f) end
  return wrap(outp[0])
end
M.call1, M.call2, M.call3, M.call4, M.call5, M.call6 = call1, call2, call3, call4, call5, call6
local function check(st) if st ~= 0 then raise(F.last_error()) end end
M.check = check

local function need_tensor(x, what, op)
  if not is_tensor(x) then
    raise(string.format('%s: %s must be a tensor, got %s', op, what, x == nil and 'nil' or type(x)))
  end
  return x
end
M.need_tensor = need_tensor
local function need_number(x, what, op)
  if type(x) ~= 'number' then
    raise(string.format('%s: %s must be a number, got %s', op, what, x == nil and 'nil' or type(x)))
  end
  return x
end
M.need_number = need_number

-- ---- shapes and dims ---------------------------------------------------------------------------------
-- Sizes as PyTorch accepts them: f(2, 3), f({2, 3}); returns the count and fills an int64[8].
local function sizes_from(op, buf, ...)
  local n = select('#', ...)
  local first = ...
  local function put(i, v)
    if type(v) ~= 'number' then
      raise(string.format('%s: size %d is %s, expected an integer', op, i, v == nil and 'nil' or type(v)))
    end
    if v ~= math.floor(v) then raise(string.format('%s: size %d is %s, expected an integer', op, i, tostring(v))) end
    buf[i - 1] = v
  end
  if type(first) == 'table' then
    local t = first
    if #t > 8 then raise(string.format('%s: %d dims requested, tensors have at most 8', op, #t)) end
    for i = 1, #t do put(i, t[i]) end
    return #t
  end
  if n > 8 then raise(string.format('%s: %d dims requested, tensors have at most 8', op, n)) end
  for i = 1, n do put(i, (select(i, ...))) end
  return n
end
M.sizes_from = sizes_from

-- Split (sizes..., opts) where opts is a trailing table with named keys.
local function split_opts(...)
  local n = select('#', ...)
  while n > 0 and select(n, ...) == nil do n = n - 1 end -- f(2, 3, nil) is f(2, 3)
  if n == 0 then return nil, 0 end
  local last = select(n, ...)
  if n >= 1 and type(last) == 'table' and last[1] == nil and next(last) ~= nil then
    return last, n - 1
  end
  if n >= 2 and type(last) == 'table' and next(last) == nil then return last, n - 1 end
  return nil, n
end
M.split_opts = split_opts

local i64, i64b = F.i64, F.i64b

function methods.dim(t) return C.ddpm_tensor_ndim(t) end
methods.ndimension = methods.dim
function methods.numel(t) return tonumber(C.ddpm_tensor_numel(t)) end
methods.nelement = methods.numel

function methods.shape(t)
  local n = C.ddpm_tensor_shape(t, i64)
  local s = {}
  for i = 0, n - 1 do s[i + 1] = tonumber(i64[i]) end
  return s
end

function methods.stride(t, d)
  local n = C.ddpm_tensor_strides(t, i64)
  if d ~= nil then
    local nd = n
    if d < -nd or d >= nd then raise(string.format('stride: dim %d out of range for %d dims', d, nd)) end
    if d < 0 then d = d + nd end
    return tonumber(i64[d])
  end
  local s = {}
  for i = 0, n - 1 do s[i + 1] = tonumber(i64[i]) end
  return s
end

function methods.size(t, d)
  if d == nil then return methods.shape(t) end
  local nd = C.ddpm_tensor_ndim(t)
  if type(d) ~= 'number' or d < -nd or d >= nd then
    raise(string.format('size: dim %s out of range for a tensor with %d dims (expected %d..%d)', tostring(d), nd, -nd,
      nd - 1))
  end
  C.ddpm_tensor_shape(t, i64)
  if d < 0 then d = d + nd end
  return tonumber(i64[d])
end

local function norm_dim(t, d, op, extra)
  local nd = C.ddpm_tensor_ndim(t) + (extra or 0)
  if type(d) ~= 'number' then raise(string.format('%s: dim must be a number, got %s', op, type(d))) end
  local n = nd > 0 and nd or 1
  if d < -n or d >= n then
    raise(string.format('%s: dim %d out of range for a tensor with %d dims (expected %d..%d)', op, d, nd - (extra or 0),
      -n, n - 1))
  end
  return d < 0 and d + n or d
end
M.norm_dim = norm_dim

function methods.is_contiguous(t) return C.ddpm_tensor_is_contiguous(t) ~= 0 end
function methods.is_floating_point(t) return D.by_id[C.ddpm_tensor_dtype(t)].is_floating_point end
function methods.element_size(t) return D.by_id[C.ddpm_tensor_dtype(t)].itemsize end
function methods.data_ptr(t) return C.ddpm_tensor_data(t) end
function methods.is_cuda(t) return C.ddpm_tensor_device(t) ~= 0 end
-- page-locked copy for fast host->GPU transfers (ddpm.cuda; raises without CUDA)
function methods.pin_memory(t) return call1(C.ddpm_pin_memory, t) end
function methods.is_pinned(t) return C.ddpm_tensor_is_pinned(t) ~= 0 end

function methods.item(t)
  local v = ffi.new('double[1]')
  check(C.ddpm_tensor_item(t, v))
  if C.ddpm_tensor_dtype(t) == 7 then return v[0] ~= 0 end
  return v[0]
end

-- All values as a flat Lua array of numbers (row-major).
function methods.totable_flat(t)
  local n = tonumber(C.ddpm_tensor_numel(t))
  local buf = ffi.new('double[?]', math.max(n, 1))
  check(C.ddpm_tensor_to_doubles(t, buf, n))
  local out = {}
  for i = 0, n - 1 do out[i + 1] = buf[i] end
  return out
end

function methods.tolist(t)
  local shape = methods.shape(t)
  local flat = methods.totable_flat(t)
  local isbool = C.ddpm_tensor_dtype(t) == 7
  if isbool then for i = 1, #flat do flat[i] = flat[i] ~= 0 end end
  if #shape == 0 then return flat[1] end
  local pos = 0
  local function build(d)
    local r = {}
    for i = 1, shape[d] do
      if d == #shape then
        pos = pos + 1
        r[i] = flat[pos]
      else
        r[i] = build(d + 1)
      end
    end
    return r
  end
  return build(1)
end

-- ---- properties (t.dtype, t.device, t.grad, t.requires_grad, ...) ---------------------------------
local props = {}
function props.dtype(t) return D.by_id[C.ddpm_tensor_dtype(t)] end
function props.device(t) return D.device_from_id(C.ddpm_tensor_device(t)) end
function props.ndim(t) return C.ddpm_tensor_ndim(t) end
function props.requires_grad(t) return C.ddpm_tensor_requires_grad(t) ~= 0 end
function props.is_leaf(t) return C.ddpm_tensor_is_leaf(t) ~= 0 end
function props.grad(t)
  check(C.ddpm_tensor_get_grad(t, outp))
  if outp[0] == nil then return nil end
  return wrap(outp[0])
end
-- PyTorch's grad_fn class names where the engine's op differs from the torch function
local grad_fn_names = { add_scalar = 'AddBackward0', mul_scalar = 'MulBackward0', div_scalar = 'DivBackward0',
  rdiv_scalar = 'DivBackward0', pow_scalar = 'PowBackward0', rpow_scalar = 'PowBackward1', pow = 'PowBackward1',
  clamp = 'ClampBackward1', copy = 'ToCopyBackward0' }
function props.grad_fn(t)
  local s = C.ddpm_tensor_grad_fn_name(t)
  if s == nil then return nil end
  local op = ffi.string(s)
  return grad_fn_names[op] or (op:gsub('^%l', string.upper):gsub('_(%l)', string.upper) .. 'Backward0')
end
function props.T(t)
  local nd = C.ddpm_tensor_ndim(t)
  local dims = {}
  for i = 1, nd do dims[i] = nd - i end
  return methods.permute(t, dims)
end
M.props = props

local setters = {}
function setters.requires_grad(t, v) check(C.ddpm_tensor_set_requires_grad(t, v and 1 or 0)) end
function setters.grad(t, g)
  if g ~= nil then need_tensor(g, 'grad', 'grad') end
  check(C.ddpm_tensor_set_grad(t, g))
end

function methods.requires_grad_(t, flag)
  if flag == nil then flag = true end
  check(C.ddpm_tensor_set_requires_grad(t, flag and 1 or 0))
  return t
end

-- ---- conversions ------------------------------------------------------------------------------------------
-- t:to(dtype), t:to('cuda'), t:to('cuda', dtype), t:to(other_tensor), t:to{device=, dtype=}
function methods.to(t, a, b)
  local dtype = C.ddpm_tensor_dtype(t)
  local device = C.ddpm_tensor_device(t)
  local function take(x)
    if x == nil then return end
    if D.is_dtype(x) then dtype = x.id
    elseif D.is_device(x) then device = x.id
    elseif is_tensor(x) then dtype, device = C.ddpm_tensor_dtype(x), C.ddpm_tensor_device(x)
    elseif type(x) == 'string' then
      if D.by_name[(x:gsub('^ddpm%.', ''))] then dtype = D.resolve(x).id else device = D.parse_device(x, 'to') end
    elseif type(x) == 'table' then
      if x.dtype then dtype = D.resolve(x.dtype, 'to').id end
      if x.device then device = D.parse_device(x.device, 'to') end
    else
      raise('to: expected a dtype, a device, a tensor or {dtype=, device=}, got ' .. type(x))
    end
  end
  take(a)
  take(b)
  return call3(C.ddpm_to, t, dtype, device)
end
local function as_dtype(id) return function(t) return call3(C.ddpm_to, t, id, C.ddpm_tensor_device(t)) end end
methods.float = as_dtype(0)
methods.double = as_dtype(1)
methods.half = as_dtype(2)
methods.bfloat16 = as_dtype(3)
methods.long = as_dtype(4)
methods.int = as_dtype(5)
methods.byte = as_dtype(6)
methods.bool = as_dtype(7)
function methods.type(t, dt)
  if dt == nil then return 'ddpm.' .. D.by_id[C.ddpm_tensor_dtype(t)].name end
  return methods.to(t, D.resolve(dt, 'type'))
end
function methods.cpu(t) return call3(C.ddpm_to, t, C.ddpm_tensor_dtype(t), 0) end
function methods.cuda(t, dev)
  local id = dev and D.parse_device(type(dev) == 'number' and ('cuda:' .. dev) or dev, 'cuda') or 1
  return call3(C.ddpm_to, t, C.ddpm_tensor_dtype(t), id)
end
function methods.contiguous(t) return call1(C.ddpm_contiguous, t) end
function methods.clone(t) return call1(C.ddpm_clone, t) end
function methods.detach(t) return call1(C.ddpm_detach, t) end
function methods.copy_(t, src)
  need_tensor(src, 'src', 'copy_')
  check(C.ddpm_copy_(t, src))
  return t
end
function methods.fill_(t, v)
  if is_tensor(v) then v = methods.item(v) end
  if type(v) == 'boolean' then v = v and 1 or 0 end
  need_number(v, 'value', 'fill_')
  check(C.ddpm_fill_(t, v))
  return t
end
function methods.zero_(t)
  check(C.ddpm_fill_(t, 0))
  return t
end

-- Release the native memory now rather than at the next collection.
function methods.free(t)
  ffi.gc(t, nil)
  release(t)
end

-- ---- views -------------------------------------------------------------------------------------------------
function methods.view(t, ...)
  local first = ...
  if D.is_dtype(first) or (type(first) == 'string' and D.by_name[first]) then
    raise('view: reinterpreting dtypes is not supported; use :to()')
  end
  local n = sizes_from('view', i64, ...)
  return call3(C.ddpm_view, t, n, i64)
end
function methods.reshape(t, ...)
  local n = sizes_from('reshape', i64, ...)
  return call3(C.ddpm_reshape, t, n, i64)
end
function methods.view_as(t, o) return methods.view(t, methods.shape(o)) end
function methods.reshape_as(t, o) return methods.reshape(t, methods.shape(o)) end
function methods.permute(t, ...)
  local n = sizes_from('permute', i64, ...)
  return call3(C.ddpm_permute, t, n, i64)
end
function methods.transpose(t, d0, d1)
  need_number(d0, 'dim0', 'transpose')
  need_number(d1, 'dim1', 'transpose')
  return call3(C.ddpm_transpose, t, d0, d1)
end
methods.swapaxes = methods.transpose
function methods.t(t)
  local nd = C.ddpm_tensor_ndim(t)
  if nd > 2 then raise(string.format('t: expects a tensor with <= 2 dims, but self has %d dims', nd)) end
  if nd < 2 then return t end
  return call3(C.ddpm_transpose, t, 0, 1)
end
function methods.expand(t, ...)
  local n = sizes_from('expand', i64, ...)
  return call3(C.ddpm_expand, t, n, i64)
end
function methods.expand_as(t, o) return methods.expand(t, methods.shape(o)) end
function methods.unsqueeze(t, d)
  need_number(d, 'dim', 'unsqueeze')
  return call2(C.ddpm_unsqueeze, t, d)
end
function methods.squeeze(t, d)
  if d == nil then return call1(C.ddpm_squeeze_all, t) end
  need_number(d, 'dim', 'squeeze')
  return call2(C.ddpm_squeeze, t, d)
end
function methods.narrow(t, d, start, length)
  need_number(d, 'dim', 'narrow')
  need_number(start, 'start', 'narrow')
  need_number(length, 'length', 'narrow')
  return call4(C.ddpm_narrow, t, d, start, length)
end
-- t:slice(dim, start, end, step): Python's t[..., start:end:step] on one dim (end exclusive).
function methods.slice(t, d, s, e, step)
  need_number(d, 'dim', 'slice')
  if s ~= nil then need_number(s, 'start', 'slice') end
  if e ~= nil then need_number(e, 'end', 'slice') end
  if step ~= nil then need_number(step, 'step', 'slice') end
  local n = methods.size(t, d)
  return call5(C.ddpm_slice, t, d, s or 0, e or n, step or 1)
end
function methods.select(t, d, i)
  need_number(d, 'dim', 'select')
  need_number(i, 'index', 'select')
  return call3(C.ddpm_select, t, d, i)
end
function methods.flatten(t, s, e)
  local shape = methods.shape(t)
  local nd = #shape
  if nd == 0 then return methods.reshape(t, 1) end
  s = norm_dim(t, s or 0, 'flatten')
  e = norm_dim(t, e or -1, 'flatten')
  if s > e then raise('flatten: start_dim cannot come after end_dim') end
  local out, prod = {}, 1
  for i = 1, s do out[#out + 1] = shape[i] end
  for i = s + 1, e + 1 do prod = prod * shape[i] end
  out[#out + 1] = prod
  for i = e + 2, nd do out[#out + 1] = shape[i] end
  return methods.reshape(t, out)
end
function methods.unflatten(t, d, sizes)
  local shape = methods.shape(t)
  d = norm_dim(t, d, 'unflatten')
  local out = {}
  for i = 1, d do out[#out + 1] = shape[i] end
  for _, v in ipairs(sizes) do out[#out + 1] = v end
  for i = d + 2, #shape do out[#out + 1] = shape[i] end
  return methods.reshape(t, out)
end
-- chunk/split return Lua arrays of views, as PyTorch returns tuples
function methods.chunk(t, chunks, d)
  need_number(chunks, 'chunks', 'chunk')
  if chunks ~= math.floor(chunks) then raise('chunk: chunks must be an integer, got ' .. chunks) end
  if chunks < 1 then raise('chunk: chunks must be at least 1') end
  d = norm_dim(t, d or 0, 'chunk')
  local n = methods.size(t, d)
  local each = math.ceil(n / chunks)
  return methods.split(t, math.max(each, 1), d)
end
function methods.split(t, size, d)
  d = norm_dim(t, d or 0, 'split')
  local n = methods.size(t, d)
  local out = {}
  if type(size) == 'table' then
    local total, pos = 0, 0
    for i, s in ipairs(size) do
      need_number(s, 'size ' .. i, 'split')
      if s < 0 then raise(string.format('split: size %d is %d, expected a size >= 0', i, s)) end
      total = total + s
    end
    if total ~= n then raise(string.format('split: sizes sum to %d but dim %d has size %d', total, d, n)) end
    for i, s in ipairs(size) do
      out[i] = call4(C.ddpm_narrow, t, d, pos, s)
      pos = pos + s
    end
    return out
  end
  need_number(size, 'split_size', 'split')
  if size < 1 then raise('split: split_size must be positive') end
  local pos = 0
  while pos < n do
    local len = math.min(size, n - pos)
    out[#out + 1] = call4(C.ddpm_narrow, t, d, pos, len)
    pos = pos + len
  end
  if n == 0 then out[1] = t end
  return out
end
function methods.unbind(t, d)
  d = norm_dim(t, d or 0, 'unbind')
  local out = {}
  for i = 0, methods.size(t, d) - 1 do out[i + 1] = call3(C.ddpm_select, t, d, i) end
  return out
end
methods['repeat'] = function(t, ...)
  local reps = { ... }
  if type(reps[1]) == 'table' then reps = reps[1] end
  local shape = methods.shape(t)
  if #reps < #shape then raise('repeat: number of repeat dims can not be smaller than the number of tensor dims') end
  local lead = #reps - #shape
  -- a new size-1 dim goes in front of each dim that is repeated and longer than 1; the others
  -- repeat by expanding in place, so the intermediate view needs as few dims as possible
  local ushape, eshape, oshape = {}, {}, {}
  for i = 1, #reps do
    local r, s = reps[i], i > lead and shape[i - lead] or 1
    need_number(r, 'repeat ' .. i, 'repeat')
    if r < 0 then raise(string.format('repeat: repeat %d is %d, expected a count >= 0', i, r)) end
    if r ~= 1 and s ~= 1 then
      ushape[#ushape + 1] = 1
      eshape[#eshape + 1] = r
    end
    ushape[#ushape + 1] = s
    eshape[#eshape + 1] = s == 1 and r or s
    oshape[i] = r * s
  end
  if #ushape > 8 then raise('repeat: this repeat needs more than 8 dims; reshape the tensor first') end
  return methods.reshape(methods.expand(methods.reshape(t, ushape), eshape), oshape)
end

-- ---- elementwise ---------------------------------------------------------------------------------------------
-- A Lua number or boolean next to a tensor becomes a 0-d tensor of that tensor's kind.
local function scalar_like(v, t)
  if type(v) == 'boolean' then v = v and 1 or 0 end
  local dt = C.ddpm_tensor_dtype(t)
  if dt >= 4 and v ~= math.floor(v) then dt = 0 end
  return call5(C.ddpm_full, 0, nil, v, dt, C.ddpm_tensor_device(t))
end
M.scalar_like = scalar_like

local function binary(fn, name)
  return function(a, b)
    if not is_tensor(a) then
      need_tensor(b, 'other', name)
      a = scalar_like(need_number(a, 'input', name), b)
    elseif not is_tensor(b) then
      b = scalar_like(type(b) == 'boolean' and b or need_number(b, 'other', name), a)
    end
    return call2(fn, a, b)
  end
end

-- scalar fast paths for + - * / (no 0-d tensor, no broadcast)
function methods.add(a, b, opts)
  if opts and opts.alpha and opts.alpha ~= 1 then
    b = is_tensor(b) and call2(C.ddpm_mul_scalar, b, opts.alpha) or b * opts.alpha
  end
  if type(b) == 'number' then return call2(C.ddpm_add_scalar, need_tensor(a, 'input', 'add'), b) end
  if type(a) == 'number' then return call2(C.ddpm_add_scalar, need_tensor(b, 'other', 'add'), a) end
  need_tensor(a, 'input', 'add')
  need_tensor(b, 'other', 'add')
  return call2(C.ddpm_add, a, b)
end
function methods.sub(a, b, opts)
  if opts and opts.alpha and opts.alpha ~= 1 then
    b = is_tensor(b) and call2(C.ddpm_mul_scalar, b, opts.alpha) or b * opts.alpha
  end
  if type(b) == 'number' then return call2(C.ddpm_add_scalar, need_tensor(a, 'input', 'sub'), -b) end
  if type(a) == 'number' then
    return call2(C.ddpm_add_scalar, call1(C.ddpm_neg, need_tensor(b, 'other', 'sub')), a)
  end
  need_tensor(a, 'input', 'sub')
  need_tensor(b, 'other', 'sub')
  return call2(C.ddpm_sub, a, b)
end
function methods.mul(a, b)
  if type(b) == 'number' then return call2(C.ddpm_mul_scalar, need_tensor(a, 'input', 'mul'), b) end
  if type(a) == 'number' then return call2(C.ddpm_mul_scalar, need_tensor(b, 'other', 'mul'), a) end
  need_tensor(a, 'input', 'mul')
  need_tensor(b, 'other', 'mul')
  return call2(C.ddpm_mul, a, b)
end
function methods.div(a, b)
  if type(b) == 'number' then return call2(C.ddpm_div_scalar, need_tensor(a, 'input', 'div'), b) end
  if type(a) == 'number' then return call2(C.ddpm_rdiv_scalar, need_tensor(b, 'other', 'div'), a) end
  need_tensor(a, 'input', 'div')
  need_tensor(b, 'other', 'div')
  return call2(C.ddpm_div, a, b)
end
methods.true_divide = methods.div
methods.multiply, methods.subtract, methods.divide = methods.mul, methods.sub, methods.div
function methods.pow(a, b)
  if type(b) == 'number' then return call2(C.ddpm_pow_scalar, need_tensor(a, 'input', 'pow'), b) end
  if type(a) == 'number' then return call2(C.ddpm_rpow_scalar, need_tensor(b, 'exponent', 'pow'), a) end
  need_tensor(a, 'input', 'pow')
  need_tensor(b, 'exponent', 'pow')
  return call2(C.ddpm_pow, a, b)
end
function methods.square(t) return call2(C.ddpm_pow_scalar, t, 2) end
methods.maximum = binary(C.ddpm_maximum, 'maximum')
methods.minimum = binary(C.ddpm_minimum, 'minimum')
methods.eq = binary(C.ddpm_eq, 'eq')
methods.ne = binary(C.ddpm_ne, 'ne')
methods.lt = binary(C.ddpm_lt, 'lt')
methods.le = binary(C.ddpm_le, 'le')
methods.gt = binary(C.ddpm_gt, 'gt')
methods.ge = binary(C.ddpm_ge, 'ge')
methods.greater, methods.less, methods.greater_equal, methods.less_equal = methods.gt, methods.lt, methods.ge, methods.le
methods.equal_elementwise = methods.eq

local function unary(fn) return function(t) return call1(fn, t) end end
methods.neg = unary(C.ddpm_neg)
methods.negative = methods.neg
methods.abs = unary(C.ddpm_abs)
methods.sign = unary(C.ddpm_sign)
methods.exp = unary(C.ddpm_exp)
methods.log = unary(C.ddpm_log)
methods.sqrt = unary(C.ddpm_sqrt)
methods.rsqrt = unary(C.ddpm_rsqrt)
methods.sin = unary(C.ddpm_sin)
methods.cos = unary(C.ddpm_cos)
methods.tanh = unary(C.ddpm_tanh)
methods.sigmoid = unary(C.ddpm_sigmoid)
methods.relu = unary(C.ddpm_relu)
methods.floor = unary(C.ddpm_floor)
methods.ceil = unary(C.ddpm_ceil)
methods.round = unary(C.ddpm_round)
methods.silu = unary(C.ddpm_silu)
-- gelu(), gelu({approximate='tanh'}) or gelu('tanh'), as torch.nn.functional.gelu
function methods.gelu(t, opts)
  local approx = type(opts) == 'table' and opts.approximate or (type(opts) == 'string' and opts) or 'none'
  if approx ~= 'none' and approx ~= 'tanh' then
    raise(string.format("gelu: approximate must be 'none' or 'tanh', got %s", tostring(approx)))
  end
  return call2(C.ddpm_gelu, t, approx == 'tanh' and 1 or 0)
end
function methods.reciprocal(t) return call2(C.ddpm_rdiv_scalar, t, 1) end
function methods.log1p(t) return methods.log(call2(C.ddpm_add_scalar, t, 1)) end
function methods.expm1(t) return call2(C.ddpm_add_scalar, methods.exp(t), -1) end

function methods.clamp(t, lo, hi)
  if type(lo) == 'table' and not is_tensor(lo) then lo, hi = lo.min, lo.max end
  if is_tensor(lo) or is_tensor(hi) then
    local r = t
    if lo ~= nil then r = methods.maximum(r, lo) end
    if hi ~= nil then r = methods.minimum(r, hi) end
    return r
  end
  if lo == nil and hi == nil then raise('clamp: at least one of min or max must be given') end
  if lo ~= nil then need_number(lo, 'min', 'clamp') end
  if hi ~= nil then need_number(hi, 'max', 'clamp') end
  return call3(C.ddpm_clamp, t, lo or -math.huge, hi or math.huge)
end
methods.clip = methods.clamp
function methods.clamp_(t, lo, hi)
  if type(lo) == 'table' then lo, hi = lo.min, lo.max end
  if lo ~= nil then need_number(lo, 'min', 'clamp_') end
  if hi ~= nil then need_number(hi, 'max', 'clamp_') end
  check(C.ddpm_clamp_(t, lo or -math.huge, hi or math.huge))
  return t
end

-- in place
function methods.add_(t, o, opts)
  local alpha = type(opts) == 'table' and opts.alpha or (type(opts) == 'number' and opts) or 1
  if type(o) == 'number' then check(C.ddpm_add_scalar_(t, o * alpha)) return t end
  check(C.ddpm_add_(t, need_tensor(o, 'other', 'add_'), alpha))
  return t
end
function methods.sub_(t, o, opts)
  local alpha = type(opts) == 'table' and opts.alpha or (type(opts) == 'number' and opts) or 1
  if type(o) == 'number' then check(C.ddpm_add_scalar_(t, -o * alpha)) return t end
  check(C.ddpm_add_(t, need_tensor(o, 'other', 'sub_'), -alpha))
  return t
end
function methods.mul_(t, o)
  if type(o) == 'number' then check(C.ddpm_mul_scalar_(t, o)) return t end
  check(C.ddpm_mul_(t, need_tensor(o, 'other', 'mul_')))
  return t
end
function methods.div_(t, o)
  if type(o) == 'number' then check(C.ddpm_mul_scalar_(t, 1 / o)) return t end
  check(C.ddpm_div_(t, need_tensor(o, 'other', 'div_')))
  return t
end

-- ---- reductions ------------------------------------------------------------------------------------------------
-- dim may be nil (all), a number or a table of numbers; opts may replace keepdim: {keepdim=true}
local function dims_arg(op, d)
  if d == nil then return 0 end
  if type(d) == 'number' then
    i64b[0] = d
    return 1
  end
  if type(d) == 'table' then
    for i, v in ipairs(d) do
      if type(v) ~= 'number' then raise(op .. ': dims must be numbers') end
      i64b[i - 1] = v
    end
    if #d == 0 then raise(op .. ': empty dim list') end
    return #d
  end
  raise(string.format('%s: dim must be a number or a table of numbers, got %s', op, type(d)))
end
local function keep_arg(k)
  if type(k) == 'table' then return k.keepdim and 1 or 0 end
  return k and 1 or 0
end
function methods.sum(t, d, keepdim)
  if type(d) == 'table' and d.dim ~= nil then d, keepdim = d.dim, d.keepdim end
  local n = dims_arg('sum', d)
  return call4(C.ddpm_sum, t, n, i64b, keep_arg(keepdim))
end
function methods.mean(t, d, keepdim)
  if type(d) == 'table' and d.dim ~= nil then d, keepdim = d.dim, d.keepdim end
  local n = dims_arg('mean', d)
  return call4(C.ddpm_mean, t, n, i64b, keep_arg(keepdim))
end
local function correction_of(opts)
  if type(opts) == 'table' then
    if opts.correction ~= nil then return opts.correction end
    if opts.unbiased == false then return 0 end
    return 1
  end
  if opts == false then return 0 end
  return 1
end
-- var(dim, {correction=1|unbiased=true, keepdim=false}) as torch.var
function methods.var(t, d, opts)
  if type(d) == 'table' and d[1] == nil then d, opts = d.dim, d end
  local n = dims_arg('var', d)
  local keep = type(opts) == 'table' and opts.keepdim and 1 or 0
  return call5(C.ddpm_var, t, n, i64b, need_number(correction_of(opts), 'correction', 'var'), keep)
end
function methods.std(t, d, opts) return methods.sqrt(methods.var(t, d, opts)) end
function methods.amax(t, d, keepdim)
  local n = dims_arg('amax', d)
  return call4(C.ddpm_amax, t, n, i64b, keep_arg(keepdim))
end
function methods.amin(t, d, keepdim)
  local n = dims_arg('amin', d)
  return call4(C.ddpm_amin, t, n, i64b, keep_arg(keepdim))
end
-- max(): the largest value; max(dim, keepdim): values, indices (as torch.max(dim) returns)
local function extreme(cfn, amfn, name)
  return function(t, d, keepdim)
    if is_tensor(d) then return (name == 'max' and methods.maximum or methods.minimum)(t, d) end
    if d == nil then return call4(amfn, t, 0, nil, 0) end
    need_number(d, 'dim', name)
    local st = cfn(outp, outp2, t, d, keep_arg(keepdim))
    if st ~= 0 then raise(F.last_error()) end
    local v, i = wrap(outp[0]), wrap(outp2[0])
    return v, i
  end
end
methods.max = extreme(C.ddpm_max_dim, C.ddpm_amax, 'max')
methods.min = extreme(C.ddpm_min_dim, C.ddpm_amin, 'min')
function methods.argmax(t, d, keepdim)
  if d == nil then return call4(C.ddpm_argmax, t, 0, 0, 1) end
  return call4(C.ddpm_argmax, t, need_number(d, 'dim', 'argmax'), keep_arg(keepdim), 0)
end
function methods.argmin(t, d, keepdim)
  if d == nil then return call4(C.ddpm_argmin, t, 0, 0, 1) end
  return call4(C.ddpm_argmin, t, need_number(d, 'dim', 'argmin'), keep_arg(keepdim), 0)
end
function methods.norm(t, p, d, keepdim)
  p = p or 2
  if p == 2 then return methods.sqrt(methods.sum(methods.mul(t, t), d, keepdim)) end
  if p == 1 then return methods.sum(methods.abs(t), d, keepdim) end
  if p == math.huge then return methods.amax(methods.abs(t), d, keepdim) end
  return methods.pow(methods.sum(methods.pow(methods.abs(t), p), d, keepdim), 1 / p)
end
function methods.all(t) return methods.item(methods.amin(methods.ne(t, 0))) end
function methods.any(t) return methods.item(methods.amax(methods.ne(t, 0))) end
function methods.allclose(a, b, rtol, atol)
  rtol, atol = rtol or 1e-5, atol or 1e-8
  local diff = methods.abs(methods.sub(a, b))
  local tol = methods.add(methods.mul(methods.abs(b), rtol), atol)
  return methods.item(methods.amax(methods.gt(diff, tol):to(a.dtype))) == 0
end
function methods.equal(a, b)
  if not is_tensor(b) then return false end
  local sa, sb = methods.shape(a), methods.shape(b)
  if #sa ~= #sb then return false end
  for i = 1, #sa do if sa[i] ~= sb[i] then return false end end
  if methods.numel(a) == 0 then return true end
  return methods.item(methods.amin(methods.eq(a, b))) == true
end

-- ---- linear algebra -------------------------------------------------------------------------------------------------
function methods.matmul(a, b)
  need_tensor(b, 'other', 'matmul')
  return call2(C.ddpm_matmul, a, b)
end
function methods.mm(a, b)
  need_tensor(b, 'mat2', 'mm')
  if C.ddpm_tensor_ndim(a) ~= 2 or C.ddpm_tensor_ndim(b) ~= 2 then
    raise(string.format('mm: expected 2-D tensors, got %d-D and %d-D', C.ddpm_tensor_ndim(a), C.ddpm_tensor_ndim(b)))
  end
  return call2(C.ddpm_matmul, a, b)
end
function methods.bmm(a, b)
  need_tensor(b, 'mat2', 'bmm')
  return call2(C.ddpm_bmm, a, b)
end

-- ---- indexing ---------------------------------------------------------------------------------------------------------
function methods.index_select(t, d, index)
  need_number(d, 'dim', 'index_select')
  need_tensor(index, 'index', 'index_select')
  return call3(C.ddpm_index_select, t, d, index)
end
function methods.index_add_(t, d, index, src)
  need_number(d, 'dim', 'index_add_')
  check(C.ddpm_index_add_(t, d, need_tensor(index, 'index', 'index_add_'), need_tensor(src, 'source', 'index_add_')))
  return t
end

-- ---- small composites PyTorch users expect -------------------------------------------------------------------
-- Built from the engine's differentiable ops, so gradients come for free.

-- flip(dims): reversed along each dim (a copy, as in PyTorch); differentiable through index_select
function methods.flip(t, dims)
  if type(dims) == 'number' then dims = { dims } end
  if type(dims) ~= 'table' then raise('flip: dims must be a number or a table of numbers, got ' .. type(dims)) end
  local r = t
  for _, d in ipairs(dims) do
    d = norm_dim(t, d, 'flip')
    local n = methods.size(t, d)
    local idx = call5(C.ddpm_arange, n - 1, -1, -1, 4, C.ddpm_tensor_device(t))
    r = call3(C.ddpm_index_select, r, d, idx)
  end
  if r == t then r = methods.clone(t) end
  return r
end

local function full_like_dtype(v, t)
  if type(v) == 'boolean' then v = v and 1 or 0 end
  if is_tensor(v) then return v end
  need_number(v, 'value', 'masked_fill')
  return call5(C.ddpm_full, 0, nil, v, C.ddpm_tensor_dtype(t), C.ddpm_tensor_device(t))
end
-- masked_fill(mask, value): value where mask is true (value cast to self's dtype, as torch)
function methods.masked_fill(t, mask, value)
  need_tensor(mask, 'mask', 'masked_fill')
  if C.ddpm_tensor_dtype(mask) ~= 7 then raise('masked_fill: mask must be a bool tensor, got ' .. tostring(mask.dtype)) end
  return call3(C.ddpm_where, mask, full_like_dtype(value, t), t)
end

-- In-place forms of out-of-place ops: compute, then copy_ into self (which refuses exactly
-- when PyTorch would refuse the in-place op); errors name the in-place op.
local function inplace_of(name, f)
  return function(t, ...)
    need_tensor(t, 'self', name)
    local r = f(t, ...)
    local st = C.ddpm_copy_(t, r)
    if st ~= 0 then raise((F.last_error():gsub('^copy_:', name .. ':'))) end
    return t
  end
end
for _, n in ipairs({ 'abs', 'neg', 'exp', 'log', 'sqrt', 'rsqrt', 'sin', 'cos', 'tanh', 'sigmoid', 'relu', 'silu',
  'floor', 'ceil', 'round', 'sign', 'reciprocal', 'square', 'pow', 'masked_fill' }) do
  methods[n .. '_'] = inplace_of(n .. '_', methods[n])
end

function methods.logical_not(t) return call2(C.ddpm_eq, t, scalar_like(0, t)) end
local function truth(t) return call2(C.ddpm_ne, t, scalar_like(0, t)) end
function methods.logical_and(a, b) return call2(C.ddpm_mul, truth(a), truth(need_tensor(b, 'other', 'logical_and'))) end
function methods.logical_or(a, b) return call2(C.ddpm_add, truth(a), truth(need_tensor(b, 'other', 'logical_or'))) end
function methods.logical_xor(a, b) return call2(C.ddpm_ne, truth(a), truth(need_tensor(b, 'other', 'logical_xor'))) end
function methods.isnan(t) return call2(C.ddpm_ne, t, t) end
function methods.isinf(t)
  if C.ddpm_tensor_dtype(t) > 3 then return call2(C.ddpm_ne, t, t) end -- integers are never infinite
  return call2(C.ddpm_eq, call1(C.ddpm_abs, t), scalar_like(math.huge, t))
end
function methods.isfinite(t)
  return methods.logical_not(methods.logical_or(methods.isnan(t), methods.isinf(t)))
end

function methods.type_as(t, o) return call3(C.ddpm_to, t, C.ddpm_tensor_dtype(need_tensor(o, 'other', 'type_as')), C.ddpm_tensor_device(t)) end
-- t:new_zeros(size, {dtype=, device=}) etc.: same dtype and device as t unless given
local function new_like(fname)
  return function(t, ...)
    local ddpm = require 'ddpm'
    local o, n = split_opts(...)
    local args = { ... }
    local oo = { dtype = t.dtype, device = t.device }
    if o then for k, v in pairs(o) do oo[k] = v end end
    args[n + 1] = oo
    return ddpm[fname](unpack(args, 1, n + 1))
  end
end
methods.new_zeros, methods.new_ones, methods.new_empty = new_like('zeros'), new_like('ones'), new_like('empty')
function methods.new_full(t, size, value, o)
  local oo = { dtype = t.dtype, device = t.device }
  if o then for k, v in pairs(o) do oo[k] = v end end
  return require('ddpm').full(size, value, oo)
end
function methods.new_tensor(t, data, o)
  local oo = { dtype = t.dtype, device = t.device }
  if o then for k, v in pairs(o) do oo[k] = v end end
  return require('ddpm').tensor(data, oo)
end

-- ---- autograd ---------------------------------------------------------------------------------------------------------
function methods.backward(t, grad, opts)
  if type(grad) == 'table' and not is_tensor(grad) then grad, opts = opts, grad end
  if grad ~= nil and not is_tensor(grad) then
    if type(grad) == 'number' then grad = scalar_like(grad, t) else need_tensor(grad, 'gradient', 'backward') end
  end
  if opts and opts.create_graph then raise('backward: create_graph=true is not supported (no higher-order gradients)') end
  local retain = opts and opts.retain_graph and 1 or 0
  local st = C.ddpm_backward(t, grad, retain)
  if st ~= 0 then F.retry(st, C.ddpm_backward, t, grad, retain) end
end

-- ---- operators ---------------------------------------------------------------------------------------------------------
local mt = {}
local Tensor_str -- set below (tensor_str.lua needs methods first)
mt.__index = function(t, k)
  local m = methods[k]
  if m ~= nil then return m end
  local p = props[k]
  if p ~= nil then return p(t) end
  return nil
end
mt.__newindex = function(t, k, v)
  local s = setters[k]
  if s then return s(t, v) end
  raise(string.format("tensor: cannot set field '%s'", tostring(k)))
end
mt.__add = methods.add
mt.__sub = methods.sub
mt.__mul = methods.mul
mt.__div = methods.div
mt.__pow = methods.pow
mt.__unm = methods.neg
mt.__len = function(t)
  if C.ddpm_tensor_ndim(t) == 0 then raise('len() of a 0-d tensor') end
  return methods.size(t, 0)
end
-- Lua turns the result of < and <= into a boolean, so PyTorch's elementwise x < y cannot be an
-- operator here; say what to write instead.  (== keeps Lua's identity meaning: t == nil works.)
mt.__lt = function() raise('tensor: < and <= compare elementwise in PyTorch; write x:lt(y), x:le(y), x:gt(y) or x:ge(y)') end
mt.__le = mt.__lt
mt.__tostring = function(t) return Tensor_str(t) end
mt.__concat = function(a, b) return tostring(a) .. tostring(b) end
ffi.metatype('struct ddpm_tensor', mt)

Tensor_str = require('ddpm.tensor_str')(M)

return M
