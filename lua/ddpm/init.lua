-- ddpm: the package users script against (≈ torch).  Creation functions, dtypes, generators,
-- grad mode; subpackages (nn, optim, models, schedulers, pipelines, data, ...) load on first use.
local F = require 'ddpm.ffi'
local D = require 'ddpm.dtype'
local T = require 'ddpm.tensor'
local ffi, C = F.ffi, F.C
local raise = F.raise
local methods = T.methods
local call1, call2, call3, call4, call5, call6 = T.call1, T.call2, T.call3, T.call4, T.call5, T.call6
local is_tensor, sizes_from, split_opts = T.is_tensor, T.sizes_from, T.split_opts

local ddpm = {}
ddpm.__version__ = ffi.string(C.ddpm_version())
ddpm.C = C
ddpm.Tensor = methods
ddpm.is_tensor = is_tensor

-- dtypes under PyTorch's names and aliases
for name, d in pairs(D.by_name) do ddpm[name] = d end
ddpm.dtype = D.resolve
ddpm.device = function(s) return D.device_from_id(D.parse_device(s, 'device')) end

local function opts_dtype(o, default)
  if o and o.dtype ~= nil then return D.resolve(o.dtype, 'dtype').id end
  return default
end
local function opts_device(o)
  if o and o.device ~= nil then return D.parse_device(o.device, 'device') end
  return 0
end
local function finish(t, o)
  if o and o.requires_grad then methods.requires_grad_(t, true) end
  return t
end

-- ---- generators ---------------------------------------------------------------------------------------
local Generator = {}
Generator.__index = Generator
Generator.__tostring = function(g) return string.format('ddpm.Generator(seed=%d, offset=%d)', g:initial_seed(), g:offset()) end
function ddpm.Generator(device)
  local p = ffi.new('ddpm_generator*[1]')
  F.check(C.ddpm_generator_new(p, 67280421310721ULL))
  return setmetatable({ handle = ffi.gc(p[0], C.ddpm_generator_free), device = device or 'cpu' }, Generator)
end
function Generator:manual_seed(seed)
  if type(seed) ~= 'number' or seed < 0 or seed ~= math.floor(seed) then
    raise('manual_seed: seed must be a non-negative integer, got ' .. tostring(seed))
  end
  C.ddpm_generator_manual_seed(self.handle, seed)
  return self
end
function Generator:initial_seed() return tonumber(C.ddpm_generator_seed(self.handle)) end
Generator.seed = Generator.initial_seed
function Generator:offset() return tonumber(C.ddpm_generator_offset(self.handle)) end
-- state is {seed, offset}: everything a counter-based stream needs to resume exactly
function Generator:get_state() return { seed = self:initial_seed(), offset = self:offset() } end
function Generator:set_state(s)
  if type(s) ~= 'table' or type(s.seed) ~= 'number' or type(s.offset) ~= 'number' then
    raise('set_state: expected a table {seed=, offset=} as returned by get_state()')
  end
  C.ddpm_generator_set_state(self.handle, s.seed, s.offset)
  return self
end
local default_gen = setmetatable({ handle = C.ddpm_default_generator(), device = 'cpu' }, Generator)
ddpm.default_generator = default_gen
function ddpm.manual_seed(seed) return default_gen:manual_seed(seed) end
function ddpm.initial_seed() return default_gen:initial_seed() end
function ddpm.get_rng_state() return default_gen:get_state() end
function ddpm.set_rng_state(s) return default_gen:set_state(s) end
local function gen_of(o)
  local g = o and o.generator
  if g == nil then return nil end
  if getmetatable(g) ~= Generator then raise('generator: expected a ddpm.Generator, got ' .. type(g)) end
  return g.handle
end
ddpm._gen_handle = gen_of
function ddpm.is_generator(g) return getmetatable(g) == Generator end

-- ---- creation -------------------------------------------------------------------------------------------------
local shape_buf = ffi.new('int64_t[8]')
local function creator(name, fill)
  return function(...)
    local o, n = split_opts(...)
    local nd = n == 0 and 0 or sizes_from(name, shape_buf, unpack({ ... }, 1, n))
    local t = call4(C.ddpm_empty, nd, shape_buf, opts_dtype(o, 0), opts_device(o))
    if fill then fill(t, o) end
    return finish(t, o)
  end
end
ddpm.empty = creator('empty')
ddpm.zeros = creator('zeros', function(t) F.check(C.ddpm_fill_(t, 0)) end)
ddpm.ones = creator('ones', function(t) F.check(C.ddpm_fill_(t, 1)) end)
ddpm.rand = creator('rand', function(t, o) F.check(C.ddpm_uniform_(t, 0, 1, gen_of(o))) end)
ddpm.randn = creator('randn', function(t, o) F.check(C.ddpm_normal_(t, 0, 1, gen_of(o))) end)
function ddpm.full(size, value, o)
  if type(size) == 'number' then size = { size } end
  if type(value) == 'boolean' then
    value = value and 1 or 0
    o = o or {}
    o.dtype = o.dtype or ddpm.bool
  end
  T.need_number(value, 'fill_value', 'full')
  local nd = sizes_from('full', shape_buf, size)
  return finish(call5(C.ddpm_full, nd, shape_buf, value, opts_dtype(o, 0), opts_device(o)), o)
end
function ddpm.randint(low, high, size, o)
  if type(high) == 'table' then low, high, size, o = 0, low, high, size end
  if type(low) ~= 'number' or type(high) ~= 'number' then raise('randint: low and high must be numbers') end
  local nd = sizes_from('randint', shape_buf, size)
  local t = call4(C.ddpm_empty, nd, shape_buf, opts_dtype(o, 4), opts_device(o))
  F.check(C.ddpm_randint_(t, low, high, gen_of(o)))
  return t
end
function ddpm.randperm(n, o)
  T.need_number(n, 'n', 'randperm')
  return call4(C.ddpm_randperm, n, opts_dtype(o, 4), opts_device(o), gen_of(o))
end
function ddpm.bernoulli(p, o)
  T.need_tensor(p, 'input', 'bernoulli')
  return call2(C.ddpm_bernoulli, p, gen_of(o))
end
function ddpm.multinomial(p, num_samples, replacement, o)
  if type(replacement) == 'table' then replacement, o = replacement.replacement, replacement end
  T.need_tensor(p, 'input', 'multinomial')
  return call4(C.ddpm_multinomial, p, num_samples, replacement and 1 or 0, gen_of(o))
end
function ddpm.normal(mean, std, size, o)
  local t = ddpm.empty(size, o)
  F.check(C.ddpm_normal_(t, mean, std, gen_of(o)))
  return t
end

local function like(fn)
  return function(t, o)
    T.need_tensor(t, 'input', 'like')
    o = o or {}
    local oo = { dtype = o.dtype or t.dtype, device = o.device or t.device, generator = o.generator,
      requires_grad = o.requires_grad }
    return fn(methods.shape(t), oo)
  end
end
ddpm.zeros_like = like(ddpm.zeros)
ddpm.ones_like = like(ddpm.ones)
ddpm.empty_like = like(ddpm.empty)
ddpm.rand_like = like(ddpm.rand)
ddpm.randn_like = like(ddpm.randn)
function ddpm.full_like(t, v, o)
  o = o or {}
  return ddpm.full(methods.shape(t), v, { dtype = o.dtype or t.dtype, device = o.device or t.device })
end

-- arange follows PyTorch: integral arguments give int64, otherwise the default float dtype
function ddpm.arange(a, b, step, o)
  if type(b) == 'table' then b, step, o = nil, nil, b elseif type(step) == 'table' then step, o = nil, step end
  local start, stop = a, b
  if stop == nil then start, stop = 0, a end
  step = step or 1
  T.need_number(start, 'start', 'arange')
  T.need_number(stop, 'end', 'arange')
  T.need_number(step, 'step', 'arange')
  local integral = start == math.floor(start) and stop == math.floor(stop) and step == math.floor(step)
  return finish(call5(C.ddpm_arange, start, stop, step, opts_dtype(o, integral and 4 or 0), opts_device(o)), o)
end
function ddpm.linspace(a, b, steps, o)
  T.need_number(steps, 'steps', 'linspace')
  return finish(call5(C.ddpm_linspace, a, b, steps, opts_dtype(o, 0), opts_device(o)), o)
end
function ddpm.eye(n, m, o)
  if type(m) == 'table' then m, o = nil, m end
  m = m or n
  local t = ddpm.zeros(n, m, o)
  local d = math.min(n, m)
  if d > 0 then
    local ones = ddpm.ones(d, { dtype = t.dtype, device = t.device })
    -- the diagonal of a row-major [n, m] matrix is a stride-(m+1) slice of its flat view
    methods.copy_(methods.slice(methods.view(t, n * m), 0, 0, n * m, m + 1), ones)
  end
  return t
end

-- ddpm.tensor(data): nested tables of numbers or booleans.  Lua numbers do not say whether
-- they are integers, so float32 is the default; pass {dtype=ddpm.int64} for indices.
function ddpm.tensor(data, o)
  if is_tensor(data) then
    local t = methods.clone(methods.detach(data))
    if o and (o.dtype or o.device) then t = methods.to(t, o) end
    return finish(t, o)
  end
  local shape, flat = {}, {}
  local isbool = false
  local function walk(x, d)
    if type(x) == 'table' then
      local n = #x
      if shape[d] == nil then shape[d] = n
      elseif shape[d] ~= n then
        raise(string.format('tensor: expected a sequence of length %d at dim %d (got %d)', shape[d], d - 1, n))
      end
      for i = 1, n do walk(x[i], d + 1) end
      if n == 0 and shape[d + 1] == nil and d == 1 then return end
    elseif type(x) == 'number' or type(x) == 'boolean' then
      if shape[d] ~= nil then raise('tensor: ragged nested tables (a number where a table was expected)') end
      if type(x) == 'boolean' then
        isbool = true
        x = x and 1 or 0
      end
      flat[#flat + 1] = x
    elseif is_tensor(x) then
      raise('tensor: nested tensors are not supported; use ddpm.stack')
    else
      raise(string.format('tensor: expected numbers, booleans or nested tables, got %s', type(x)))
    end
  end
  walk(data, 1)
  if #shape > 8 then raise('tensor: more than 8 dims') end
  local n = #flat
  local buf = ffi.new('double[?]', math.max(n, 1))
  for i = 1, n do buf[i - 1] = flat[i] end
  for i = 1, #shape do shape_buf[i - 1] = shape[i] end
  local dt = opts_dtype(o, isbool and 7 or 0)
  return finish(call5(C.ddpm_from_doubles, buf, #shape, shape_buf, dt, opts_device(o)), o)
end
ddpm.as_tensor = ddpm.tensor
-- from raw bytes (a Lua string or a pointer + length)
function ddpm.frombuffer(data, shape, dtype, o)
  dtype = D.resolve(dtype or ddpm.uint8, 'frombuffer')
  local nd = sizes_from('frombuffer', shape_buf, shape)
  local n = type(data) == 'string' and #data or (o and o.nbytes)
  return call6(C.ddpm_from_bytes, data, n, nd, shape_buf, dtype.id, opts_device(o))
end

-- ---- functions mirroring tensor methods ------------------------------------------------------------------
local fn_names = { 'add', 'sub', 'mul', 'div', 'pow', 'neg', 'abs', 'sign', 'exp', 'log', 'sqrt', 'rsqrt', 'sin', 'cos',
  'tanh', 'sigmoid', 'relu', 'floor', 'ceil', 'round', 'clamp', 'clip', 'maximum', 'minimum', 'eq', 'ne', 'lt', 'le', 'gt',
  'ge', 'sum', 'mean', 'var', 'std', 'amax', 'amin', 'max', 'min', 'argmax', 'argmin', 'matmul', 'mm', 'bmm', 'reshape',
  'permute', 'transpose', 'flatten', 'unsqueeze', 'squeeze', 'narrow', 'select', 'chunk', 'split', 'unbind', 'square',
  'norm', 'allclose', 'index_select', 'equal', 'reciprocal', 'log1p', 'expm1', 'clone', 'detach', 'numel', 't', 'swapaxes', 'unflatten', 'flip', 'masked_fill', 'logical_not',
  'logical_and', 'logical_or', 'logical_xor', 'isnan', 'isinf', 'isfinite', 'std', 'expand', 'view', 'contiguous' }
-- torch.add(2, x) may take a number first; every other function needs a tensor first, and says
-- so by name rather than failing inside the FFI
local number_first = { add = true, sub = true, mul = true, div = true, pow = true, maximum = true, minimum = true,
  eq = true, ne = true, lt = true, le = true, gt = true, ge = true }
for _, n in ipairs(fn_names) do
  local f = methods[n]
  if number_first[n] then
    ddpm[n] = f
  else
    ddpm[n] = function(x, ...)
      if not is_tensor(x) then
        raise(string.format('%s: input must be a tensor, got %s', n, x == nil and 'nil' or type(x)))
      end
      return f(x, ...)
    end
  end
end

local list_buf_t = ffi.typeof('ddpm_tensor*[?]')
local function tensor_list(op, list)
  if is_tensor(list) then raise(op .. ': expected a table of tensors, got a tensor (write ' .. op .. '({a, b}))') end
  if type(list) ~= 'table' then raise(op .. ': expected a table of tensors, got ' .. type(list)) end
  local n = #list
  local arr = list_buf_t(math.max(n, 1))
  for i = 1, n do
    if not is_tensor(list[i]) then raise(string.format('%s: element %d is %s, expected a tensor', op, i, type(list[i]))) end
    arr[i - 1] = list[i]
  end
  return n, arr
end
function ddpm.cat(list, dim)
  local n, arr = tensor_list('cat', list)
  local r = call3(C.ddpm_cat, n, arr, dim or 0)
  return r
end
ddpm.concat = ddpm.cat
ddpm.concatenate = ddpm.cat
function ddpm.stack(list, dim)
  local n, arr = tensor_list('stack', list)
  return call3(C.ddpm_stack, n, arr, dim or 0)
end
function ddpm.where(cond, a, b)
  T.need_tensor(cond, 'condition', 'where')
  if not is_tensor(a) then a = T.scalar_like(a, is_tensor(b) and b or cond) end
  if not is_tensor(b) then b = T.scalar_like(b, a) end
  return call3(C.ddpm_where, cond, a, b)
end

-- ---- grad mode ------------------------------------------------------------------------------------------------------
-- LuaJIT has no table.pack: collect results with a closure instead
local function pack(...) return { n = select('#', ...), ... } end
local function with_grad_mode(name, mode, fn, ...)
  if type(fn) ~= 'function' then raise(name .. ': expected a function to run, got ' .. type(fn)) end
  local prev = C.ddpm_grad_enabled()
  C.ddpm_set_grad_enabled(mode)
  local res = pack(pcall(fn, ...))
  C.ddpm_set_grad_enabled(prev)
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n)
end
function ddpm.no_grad(fn, ...) return with_grad_mode('no_grad', 0, fn, ...) end
function ddpm.enable_grad(fn, ...) return with_grad_mode('enable_grad', 1, fn, ...) end
function ddpm.is_grad_enabled() return C.ddpm_grad_enabled() ~= 0 end
function ddpm.set_grad_enabled(on) C.ddpm_set_grad_enabled(on and 1 or 0) end
ddpm.inference_mode = ddpm.no_grad

-- file formats and generic save/load live in ddpm.io
for _, n in ipairs({ 'load_safetensors', 'save_safetensors', 'load_npy', 'save_npy', 'save', 'load' }) do ddpm[n] = function(...) return require('ddpm.io')[n](...) end end
function ddpm.set_num_threads(n) F.check(C.ddpm_set_num_threads(n)) end
function ddpm.get_num_threads() return C.ddpm_get_num_threads() end

-- Subpackages load on first access, so `ddpm-lua -e` starts in milliseconds.
local lazy = { nn = 'ddpm.nn', optim = 'ddpm.optim', autograd = 'ddpm.autograd', models = 'ddpm.models',
  schedulers = 'ddpm.schedulers', pipelines = 'ddpm.pipelines', data = 'ddpm.data', io = 'ddpm.io',
  cuda = 'ddpm.cuda', amp = 'ddpm.amp', utils = 'ddpm.utils', metrics = 'ddpm.metrics', cli = 'ddpm.cli',
  testing = 'ddpm.testing', autocast = 'ddpm.autocast', backends = 'ddpm.backends' }
setmetatable(ddpm, {
  __index = function(t, k)
    local mod = lazy[k]
    if mod then
      local v = require(mod)
      rawset(t, k, v)
      return v
    end
    return nil
  end,
})

return ddpm
