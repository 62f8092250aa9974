-- ffi_symbols_spec.lua: every function declared in the FFI region of ddpm.h resolves in the
-- loaded libddpm, the enums agree with the C side, and the op table is complete.
local ddpm = require 'ddpm'
local ffi = require 'ffi'
local C = ddpm.C

-- function names declared in the cdef text: an identifier followed by "(" at the top level of
-- a declaration (comments stripped first, so prose never counts)
local function declared_functions(src)
  src = src:gsub('/%*.-%*/', ' '):gsub('//[^\n]*', ' ')
  local names, seen = {}, {}
  for decl in src:gmatch('[^;]+') do
    if not decl:match('^%s*typedef') and not decl:match('^%s*enum') then
      local name = decl:match('([%a_][%w_]*)%s*%(')
      if name and not seen[name] then
        seen[name] = true
        names[#names + 1] = name
      end
    end
  end
  return names
end

describe('the FFI region of ddpm.h', function()
  local cdef = require 'ddpm.cdef'
  local names = declared_functions(cdef)

  it('declares the core API', function()
    assert.is_true(#names >= 120, 'only ' .. #names .. ' functions found in cdef.lua')
    local set = {}
    for _, n in ipairs(names) do set[n] = true end
    for _, n in ipairs({ 'ddpm_abi_version', 'ddpm_add', 'ddpm_matmul', 'ddpm_backward', 'ddpm_autograd_grad',
      'ddpm_autograd_backward', 'ddpm_index_select', 'ddpm_multinomial', 'ddpm_tensor_release' }) do
      assert.is_true(set[n], n .. ' is not declared')
    end
  end)

  it('has every declared function resolve in libddpm', function()
    local missing = {}
    for _, n in ipairs(names) do
      local ok = pcall(function() return C[n] end)
      if not ok then missing[#missing + 1] = n end
    end
    assert.are.same({}, missing)
  end)

  it('is plain declarations only (no macros or conditionals)', function()
    assert.is_nil(cdef:match('\n%s*#'))
  end)

  it('agrees with the library on enums, dtypes and ops', function()
    assert.are.equal(C.ddpm_abi_version(), 1)
    assert.are.equal(0, tonumber(C.DDPM_OK))
    assert.are.equal(9, tonumber(C.DDPM_ERR_AUTOGRAD))
    local expect = { float32 = 4, float64 = 8, float16 = 2, bfloat16 = 2, int64 = 8, int32 = 4, uint8 = 1, bool = 1 }
    for name, size in pairs(expect) do
      local d = ddpm[name]
      assert.are.equal(name, ffi.string(C.ddpm_dtype_name(d.id)))
      assert.are.equal(size, C.ddpm_dtype_size(d.id))
      assert.are.equal(d.is_floating_point, C.ddpm_dtype_is_floating(d.id) ~= 0)
    end
    local n = C.ddpm_op_count()
    assert.is_true(n > 40)
    for op = 0, n - 1 do assert.is_not_nil(C.ddpm_op_name(op)) end
    assert.is_true(C.ddpm_op_name(n) == nil)
  end)
end)
