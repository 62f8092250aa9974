-- io_npy_spec.lua: ddpm.load_npy / ddpm.save_npy: byte-identical output to numpy 1.24 (reference
-- files below were written by numpy 1.24.2's np.save), every readable dtype and version, and clear
-- refusals of big-endian, Fortran-order, object and truncated files.
local ddpm = require 'ddpm'
local H = require 'formats_helpers'

-- np.save output (numpy 1.24.2), as Lua strings
local ref = {
  r_i8 = "\147NUMPY\001\000v\000{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3), }" .. (" "):rep(58) .. "\010\000\000\000\000\000\000\000\000\001\000\000\000\000\000\000\000\002\000\000\000\000\000\000\000\003\000\000\000\000\000\000\000\004\000\000\000\000\000\000\000\005\000\000\000\000\000\000\000",
  r_f8 = "\147NUMPY\001\000v\000{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }" .. (" "):rep(60) .. "\010\000\000\000\000\000\000\248?\000\000\000\000\000\000\000@",
  r_f4s = "\147NUMPY\001\000v\000{'descr': '<f4', 'fortran_order': False, 'shape': (), }" .. (" "):rep(62) .. "\010\000\000@@",
  r_b1 = "\147NUMPY\001\000v\000{'descr': '|b1', 'fortran_order': False, 'shape': (1, 2), }" .. (" "):rep(58) .. "\010\001\000",
  r_f2 = "\147NUMPY\001\000v\000{'descr': '<f2', 'fortran_order': False, 'shape': (3, 1, 1), }" .. (" "):rep(55) .. "\010\000<\000@\000B",
  r_i4 = "\147NUMPY\001\000v\000{'descr': '<i4', 'fortran_order': False, 'shape': (1, 2, 3, 2), }" .. (" "):rep(52) .. "\010\000\000\000\000\001\000\000\000\002\000\000\000\003\000\000\000\004\000\000\000\005\000\000\000\006\000\000\000\007\000\000\000\008\000\000\000\009\000\000\000\010\000\000\000\011\000\000\000",
  r_empty = "\147NUMPY\001\000v\000{'descr': '<f8', 'fortran_order': False, 'shape': (0, 5), }" .. (" "):rep(58) .. "\010",
  q_i1 = "\147NUMPY\001\000v\000{'descr': '|i1', 'fortran_order': False, 'shape': (3,), }" .. (" "):rep(60) .. "\010\255\005\128",
  q_i2 = "\147NUMPY\001\000v\000{'descr': '<i2', 'fortran_order': False, 'shape': (3,), }" .. (" "):rep(60) .. "\010\255\255,\001\000\128",
  q_u2 = "\147NUMPY\001\000v\000{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }" .. (" "):rep(60) .. "\010\255\255\007\000",
  q_u4 = "\147NUMPY\001\000v\000{'descr': '<u4', 'fortran_order': False, 'shape': (2,), }" .. (" "):rep(60) .. "\010\255\255\255\255\007\000\000\000",
  q_v2 = "\147NUMPY\002\000t\000\000\000{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }" .. (" "):rep(58) .. "\010\000\000\000\000\000\000\000\000\000\000\000\000\000\000\240?\000\000\000\000\000\000\000@",
  q_v3 = "\147NUMPY\003\000t\000\000\000{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }" .. (" "):rep(58) .. "\010\000\000\000\000\000\000\000\000\000\000\000\000\000\000\240?\000\000\000\000\000\000\000@",
  q_be = "\147NUMPY\001\000v\000{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }" .. (" "):rep(60) .. "\010?\128\000\000@\000\000\000",
  q_fo = "\147NUMPY\001\000v\000{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }" .. (" "):rep(59) .. "\010\000\000\000\000\000\000\000\000\000\000\000\000\000\000\008@\000\000\000\000\000\000\240?\000\000\000\000\000\000\016@\000\000\000\000\000\000\000@\000\000\000\000\000\000\020@",
  q_u8 = "\147NUMPY\001\000v\000{'descr': '<u8', 'fortran_order': False, 'shape': (1,), }" .. (" "):rep(60) .. "\010\001\000\000\000\000\000\000\000",
  q_struct = "\147NUMPY\001\000v\000{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }" .. (" "):rep(51) .. "\010\000\000\000\000\000\000\000\000",
}

describe('npy', function()
  local dir
  setup(function() dir = H.tmpdir('npy') end)
  teardown(function() H.rmdir(dir) end)
  local function file(name, bytes)
    local p = dir .. '/' .. name
    H.write(p, bytes)
    return p
  end

  it('writes exactly the bytes numpy writes', function()
    local cases = {
      r_i8 = ddpm.arange(6):view(2, 3),
      r_f8 = ddpm.tensor({ 1.5, 2 }, { dtype = ddpm.float64 }),
      r_f4s = ddpm.tensor(3),
      r_b1 = ddpm.tensor({ { true, false } }),
      r_f2 = ddpm.tensor({ 1, 2, 3 }, { dtype = ddpm.float16 }):view(3, 1, 1),
      r_i4 = ddpm.arange(12):int():view(1, 2, 3, 2),
      r_empty = ddpm.zeros(0, 5, { dtype = ddpm.float64 }),
    }
    for name, t in pairs(cases) do
      local p = dir .. '/' .. name .. '.npy'
      ddpm.save_npy(p, t)
      assert.are.equal(ref[name], H.read(p), name)
    end
  end)

  it('writes non-contiguous tensors in C order', function()
    local t = ddpm.arange(6):view(3, 2):t() -- [[0,2,4],[1,3,5]]
    local p = dir .. '/t.npy'
    ddpm.save_npy(p, t)
    assert.are.same({ { 0, 2, 4 }, { 1, 3, 5 } }, ddpm.load_npy(p):tolist())
  end)

  it('reads what numpy writes: all dtypes, versions 1-3', function()
    assert.are.same({ { 0, 1, 2 }, { 3, 4, 5 } }, ddpm.load_npy(file('a.npy', ref.r_i8)):tolist())
    assert.are.equal(ddpm.int64, ddpm.load_npy(file('a.npy', ref.r_i8)).dtype)
    assert.are.equal(3, ddpm.load_npy(file('s.npy', ref.r_f4s)):item())
    assert.are.same({ { true, false } }, ddpm.load_npy(file('b.npy', ref.r_b1)):tolist())
    assert.are.same({ 3, 1, 1 }, ddpm.load_npy(file('h.npy', ref.r_f2)):shape())
    assert.are.equal(ddpm.float16, ddpm.load_npy(file('h.npy', ref.r_f2)).dtype)
    assert.are.same({ 0, 5 }, ddpm.load_npy(file('e.npy', ref.r_empty)):shape())
    local i1 = ddpm.load_npy(file('i1.npy', ref.q_i1))
    assert.are.equal(ddpm.int32, i1.dtype)
    assert.are.same({ -1, 5, -128 }, i1:tolist())
    assert.are.same({ -1, 300, -32768 }, ddpm.load_npy(file('i2.npy', ref.q_i2)):tolist())
    assert.are.same({ 65535, 7 }, ddpm.load_npy(file('u2.npy', ref.q_u2)):tolist())
    local u4 = ddpm.load_npy(file('u4.npy', ref.q_u4))
    assert.are.equal(ddpm.int64, u4.dtype)
    assert.are.same({ 4294967295, 7 }, u4:tolist())
    assert.are.same({ 0, 1, 2 }, ddpm.load_npy(file('v2.npy', ref.q_v2)):tolist())
    assert.are.same({ 0, 1, 2 }, ddpm.load_npy(file('v3.npy', ref.q_v3)):tolist())
  end)

  it('round-trips every dtype numpy has', function()
    for _, dt in ipairs({ ddpm.float32, ddpm.float64, ddpm.float16, ddpm.int64, ddpm.int32, ddpm.uint8, ddpm.bool }) do
      local t = ddpm.arange(24):view(2, 3, 4):to(dt)
      local p = dir .. '/rt.npy'
      ddpm.save_npy(p, t)
      local b = ddpm.load_npy(p)
      assert.are.equal(dt, b.dtype)
      assert.is_true(b:equal(t), tostring(dt))
    end
    H.raises(function() ddpm.save_npy(dir .. '/bf.npy', ddpm.ones(2):bfloat16()) end, 'numpy has no bfloat16')
  end)

  it('refuses big-endian, Fortran-order, object, uint64 and structured arrays clearly', function()
    H.raises(function() ddpm.load_npy(file('be.npy', ref.q_be)) end, 'be.npy', 'big-endian')
    H.raises(function() ddpm.load_npy(file('fo.npy', ref.q_fo)) end, 'fo.npy', 'Fortran-order')
    H.raises(function() ddpm.load_npy(file('u8.npy', ref.q_u8)) end, 'u8.npy', 'uint64')
    H.raises(function() ddpm.load_npy(file('st.npy', ref.q_struct)) end, 'st.npy', 'structured')
  end)

  it('refuses corrupt and truncated files with the file name and the expected form', function()
    local good = ref.r_i4
    for n = 0, #good - 1, 3 do
      H.raises(function() ddpm.load_npy(file('trunc.npy', good:sub(1, n))) end, 'trunc.npy')
    end
    H.raises(function() ddpm.load_npy(file('tr.npy', good:sub(1, #good - 4))) end, 'needs 48 data bytes but the file holds 44', 'truncated')
    H.raises(function() ddpm.load_npy(file('tl.npy', good .. 'xx')) end, 'trailing bytes')
    H.raises(function() ddpm.load_npy(file('m.npy', 'PK\3\4' .. good:sub(5))) end, 'magic string', 'expected a .npy file')
    H.raises(function() ddpm.load_npy(file('v.npy', good:sub(1, 6) .. '\4\0' .. good:sub(9))) end, 'version 4.0')
    H.raises(function() ddpm.load_npy(file('hl.npy', good:sub(1, 8) .. '\255\255' .. good:sub(11))) end, 'exceeds the file size')
    local bad_headers = {
      { "{'descr': '<i4', 'fortran_order': False}", 'lacks one of' },
      { "{'descr': '<i4', 'fortran_order': False, 'shape': (2, -3), }", 'non-negative integers' },
      { "{'descr': '<i4', 'fortran_order': Maybe, 'shape': (2,), }", 'True or False' },
      { "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", "unexpected or repeated header key 'extra'" },
      { "{'descr': '<i4', 'fortran_order': False, 'shape': (99999999999, 99999999999, 99999999999), }", 'overflows' },
      { "{'descr': '<q9', 'fortran_order': False, 'shape': (2,), }", 'unsupported dtype' },
      { "['descr']", 'not a Python dict' },
      { "{'descr': '<i4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 'at most 8' },
    }
    for i, c in ipairs(bad_headers) do
      local h = c[1] .. '\n'
      local bytes = '\147NUMPY\1\0' .. string.char(#h % 256, math.floor(#h / 256)) .. h .. string.rep('\0', 8)
      H.raises(function() ddpm.load_npy(file('h' .. i .. '.npy', bytes)) end, 'h' .. i .. '.npy', c[2])
    end
    H.raises(function() ddpm.load_npy(dir .. '/missing.npy') end, 'missing.npy', 'No such file')
    H.raises(function() ddpm.load_npy(dir) end, 'directory')
  end)

  it('writes atomically and reports unwritable destinations', function()
    local p = dir .. '/keep.npy'
    ddpm.save_npy(p, ddpm.ones(3))
    pcall(ddpm.save_npy, p, ddpm.ones(3):bfloat16())
    assert.is_true(ddpm.load_npy(p):equal(ddpm.ones(3)))
    H.raises(function() ddpm.save_npy(dir .. '/nodir/x.npy', ddpm.ones(1)) end, 'nodir', 'cannot create a file')
    local rc = H.run_child(string.format('ddpm.save_npy(%q, ddpm.zeros(100000))', p), 'ulimit -f 64')
    assert.are_not.equal(0, rc)
    assert.is_true(ddpm.load_npy(p):equal(ddpm.ones(3)))
  end)
end)
