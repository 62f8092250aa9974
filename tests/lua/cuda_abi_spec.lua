-- cuda_abi_spec.lua: the ABI is the same with and without CUDA: every function of ddpm.h's FFI
-- region resolves in libddpm, a CPU-only build (libddpm_nocuda, built beside a CUDA build)
-- exports exactly the same FFI functions, and the CUDA backend has a kernel for every core op.
local ddpm = require 'ddpm'
local F = require 'ddpm.ffi'

local function ffi_functions()
  local names, seen = {}, {}
  local cdef = require 'ddpm.cdef'
  for name in cdef:gmatch('[%w_%*%s]-[%s%*]([%a_][%w_]*)%s*%b()%s*;') do
    if name:match('^ddpm_') and not seen[name] then
      seen[name] = true
      names[#names + 1] = name
    end
  end
  return names
end

local function defined_symbols(lib)
  local p = io.popen('nm -D --defined-only ' .. lib .. ' 2>/dev/null')
  if not p then return nil end
  local set, n = {}, 0
  for line in p:lines() do
    local sym = line:match('%s[TW]%s+([%w_]+)$')
    if sym then set[sym] = true n = n + 1 end
  end
  p:close()
  return n > 0 and set or nil
end

describe('the FFI region and the libraries', function()
  local names = ffi_functions()

  it('declares the CUDA functions, and every declared function resolves', function()
    assert.is_true(#names > 150)
    local have = {}
    for _, n in ipairs(names) do have[n] = true end
    for _, n in ipairs({ 'ddpm_cuda_is_available', 'ddpm_cuda_memory_stats', 'ddpm_cuda_stream_new', 'ddpm_cuda_graph_replay',
      'ddpm_pin_memory', 'ddpm_autocast_set', 'ddpm_cuda_set_flag', 'ddpm_tensor_record_stream' }) do
      assert.is_true(have[n], n .. ' is not in the FFI region')
    end
    for _, n in ipairs(names) do
      local ok = pcall(function() return F.C[n] end)
      assert.is_true(ok, n .. ' does not resolve in libddpm')
    end
  end)

  it('a CPU-only build exports the same FFI functions as the CUDA build', function()
    local ok, cfg = pcall(require, 'ddpm.build_config')
    if not ok or not cfg.cuda then
      pending('this is a CPU-only build: nothing to compare with')
      return
    end
    local nocuda = cfg.libpath:gsub('libddpm%.so$', 'libddpm_nocuda.so')
    local a, b = defined_symbols(cfg.libpath), defined_symbols(nocuda)
    if not a or not b then
      pending('nm or ' .. nocuda .. ' is not available')
      return
    end
    for _, n in ipairs(names) do
      assert.is_true(a[n] ~= nil, n .. ' missing from the CUDA build')
      assert.is_true(b[n] ~= nil, n .. ' missing from the CPU-only build')
    end
    for s in pairs(a) do
      if s:match('^ddpm_') then assert.is_true(b[s] ~= nil, s .. ' is exported only by the CUDA build') end
    end
    for s in pairs(b) do
      if s:match('^ddpm_') then assert.is_true(a[s] ~= nil, s .. ' is exported only by the CPU-only build') end
    end
  end)

  it('the CUDA backend has a kernel for every core op', function()
    if not ddpm.cuda.is_built() then
      assert.are.equal(0, F.C.ddpm_cuda_has_kernel(0))
      return
    end
    local core = {
      'copy', 'fill', 'neg', 'abs', 'sign', 'exp', 'log', 'sqrt', 'rsqrt', 'sin', 'cos', 'tanh', 'sigmoid', 'relu', 'silu',
      'gelu', 'floor', 'ceil', 'round', 'activation_backward', 'add_scalar', 'mul_scalar', 'div_scalar', 'rdiv_scalar',
      'pow_scalar', 'rpow_scalar', 'clamp', 'add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum', 'eq', 'ne', 'lt', 'le',
      'gt', 'ge', 'where', 'sum', 'amax', 'amin', 'argmax', 'argmin', 'bmm', 'linear', 'cat', 'index_select', 'index_add',
      'uniform', 'normal', 'randint', 'bernoulli' }
    local id = {}
    for op = 0, F.C.ddpm_op_count() - 1 do id[F.ffi.string(F.C.ddpm_op_name(op))] = op end
    for _, name in ipairs(core) do
      assert.is_not_nil(id[name], 'op ' .. name .. ' is not in ops.def')
      assert.are.equal(1, F.C.ddpm_cuda_has_kernel(id[name]), 'no CUDA kernel for ' .. name)
    end
    -- views have no kernel anywhere
    assert.are.equal(0, F.C.ddpm_cuda_has_kernel(id.view))
  end)

  it('the switches keep their PyTorch defaults', function()
    assert.is_false(ddpm.backends.cuda.matmul.allow_tf32)
    assert.is_true(ddpm.backends.cudnn.allow_tf32)
    assert.is_false(ddpm.backends.cudnn.benchmark)
    ddpm.backends.set_float32_matmul_precision('high')
    assert.is_true(ddpm.backends.cuda.matmul.allow_tf32)
    ddpm.backends.set_float32_matmul_precision('highest')
    assert.are.equal('highest', ddpm.backends.get_float32_matmul_precision())
  end)
end)
