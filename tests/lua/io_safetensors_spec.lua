-- io_safetensors_spec.lua: ddpm.load_safetensors / save_safetensors / safe_open from Lua: round
-- trips of every dtype and layout, metadata, fixtures, corrupt files, atomic replacement.
local ddpm = require 'ddpm'
local H = require 'formats_helpers'

describe('safetensors', function()
  local dir
  setup(function() dir = H.tmpdir('st') end)
  teardown(function() H.rmdir(dir) end)

  it('round-trips every dtype, non-contiguous tensors and metadata', function()
    local g = ddpm.Generator():manual_seed(1)
    local x = ddpm.randn(3, 4, { generator = g })
    local tensors = {
      f32 = x, f64 = x:double(), f16 = x:half(), bf16 = x:bfloat16(), i64 = ddpm.arange(7),
      i32 = ddpm.arange(5):int(), u8 = ddpm.arange(250, 256):byte(), b = ddpm.tensor({ true, false, true }),
      xt = x:t(), scalar = ddpm.tensor(2.5), empty = ddpm.zeros(0, 3),
    }
    local path = dir .. '/all.safetensors'
    ddpm.save_safetensors(path, tensors, { format = 'pt', note = 'ünïcode "quoted"', n = 3 })
    local back, meta = ddpm.load_safetensors(path)
    for k, v in pairs(tensors) do
      assert.is_not_nil(back[k], k)
      assert.are.same(v:shape(), back[k]:shape(), k)
      assert.are.equal(v.dtype, back[k].dtype, k)
      assert.is_true(v:equal(back[k]), k)
    end
    assert.are.same({ format = 'pt', note = 'ünïcode "quoted"', n = '3' }, meta)
  end)

  it('accepts the argument order of safetensors.torch.save_file', function()
    local path = dir .. '/order.safetensors'
    ddpm.save_safetensors({ a = ddpm.ones(2) }, path, { k = 'v' })
    local t, m = ddpm.load_safetensors(path)
    assert.is_true(t.a:equal(ddpm.ones(2)))
    assert.are.equal('v', m.k)
  end)

  it('loads tensors that stay valid after the file is replaced and can be written in place', function()
    local path = dir .. '/live.safetensors'
    ddpm.save_safetensors(path, { w = ddpm.arange(4):float() })
    local t = ddpm.load_safetensors(path).w
    ddpm.save_safetensors(path, { w = ddpm.zeros(4) })
    collectgarbage('collect')
    assert.are.same({ 0, 1, 2, 3 }, t:tolist())
    t:add_(1) -- a private copy-on-write mapping: allowed, and the file is untouched
    assert.are.same({ 1, 2, 3, 4 }, t:tolist())
    assert.are.same({ 0, 0, 0, 0 }, ddpm.load_safetensors(path).w:tolist())
  end)

  it('loads the reference fixtures with their metadata', function()
    local shared = os.getenv('DDPM_SHARED')
    if not shared or not H.exists(shared .. '/fixtures/seed/emb_net.safetensors') then
      pending('DDPM_SHARED fixtures not available')
      return
    end
    local t, meta = ddpm.load_safetensors(shared .. '/fixtures/seed/emb_net.safetensors')
    assert.are.same({ 64, 5 }, t['0.weight']:shape())
    assert.are.equal('hash', meta.init)
    local s = ddpm.load_safetensors(shared .. '/fixtures/scheduler_ddpm.safetensors')
    assert.are.equal(ddpm.int64, s.timesteps_200.dtype)
    assert.are.equal(199, s.timesteps_200:select(0, 0):item())
    -- safe_open reads single tensors and the header only
    local f = ddpm.io.safe_open(shared .. '/fixtures/tiny/unet/diffusion_pytorch_model.safetensors')
    assert.are.equal(210, #f:keys())
    assert.are.same({ 32, 3, 3, 3 }, f:get_tensor('conv_in.weight'):shape())
    assert.are.equal('pt', f:metadata().format)
    f:close()
    local info = ddpm.io.read_safetensors_header(shared .. '/fixtures/tiny/io.safetensors')
    assert.are.same({ dtype = 'I64', shape = { 4 } }, info.timesteps)
  end)

  it('moves tensors to a device on load when asked', function()
    local path = dir .. '/dev.safetensors'
    ddpm.save_safetensors(path, { a = ddpm.ones(2) })
    local t = ddpm.load_safetensors(path, { device = 'cpu' })
    assert.are.equal('cpu', tostring(t.a.device))
  end)

  describe('refuses bad input with a clear error naming the file', function()
    local good
    setup(function()
      good = dir .. '/good.safetensors'
      ddpm.save_safetensors(good, { a = ddpm.arange(4):float(), b = ddpm.ones(2, 2) }, { k = 'v' })
    end)
    local function with_header(name, header, data)
      local p = dir .. '/' .. name
      H.write(p, H.u64(#header) .. header .. data)
      return p
    end
    local data16 = string.rep('\0', 16)

    it('missing file, directory', function()
      H.raises(function() ddpm.load_safetensors(dir .. '/missing.safetensors') end, 'missing.safetensors',
        'No such file')
      H.raises(function() ddpm.load_safetensors(dir) end, 'is a directory')
      H.raises(function() ddpm.load_safetensors(nil) end, 'path must be a string')
    end)
    it('truncated files at every length', function()
      local bytes = H.read(good)
      local p = dir .. '/trunc.safetensors'
      for n = 0, #bytes - 1, 5 do
        H.write(p, bytes:sub(1, n))
        H.raises(function() ddpm.load_safetensors(p) end, 'trunc.safetensors')
      end
    end)
    it('short header, huge header length', function()
      local p = dir .. '/short.safetensors'
      H.write(p, '\8\0\0')
      H.raises(function() ddpm.load_safetensors(p) end, 'short.safetensors', 'too short', 'expected a safetensors file')
      H.write(p, H.u64(2 ^ 40) .. '{}')
      H.raises(function() ddpm.load_safetensors(p) end, 'exceeds the file size')
    end)
    it('bad JSON', function()
      local p = with_header('json.safetensors', '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},,}', data16)
      H.raises(function() ddpm.load_safetensors(p) end, 'json.safetensors', 'JSON header is invalid', 'at byte')
      p = with_header('json2.safetensors', '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}', data16)
      H.raises(function() ddpm.load_safetensors(p) end, 'JSON header is invalid')
    end)
    it('offsets past the end, overlapping, gaps, wrong byte counts, absurd shapes', function()
      local cases = {
        { '{"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}', 'past the end' },
        { '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
          'overlap' },
        { '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}',
          'gap' },
        { '{"a":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}}', 'expected 5 elements x 4 bytes' },
        { '{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}}', 'overflowing' },
        { '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"__metadata__":{"k":[1]}}', 'expected a string' },
        { '{"a":{"dtype":"XX","shape":[4],"data_offsets":[0,16]}}', 'unknown dtype' },
      }
      for i, c in ipairs(cases) do
        local p = with_header('case' .. i .. '.safetensors', c[1], data16)
        H.raises(function() ddpm.load_safetensors(p) end, 'case' .. i .. '.safetensors', c[2])
      end
    end)
    it('bad arguments to save', function()
      H.raises(function() ddpm.save_safetensors(dir .. '/x.safetensors', { a = 1 }) end, '"a" is a number, expected a tensor')
      H.raises(function() ddpm.save_safetensors(dir .. '/x.safetensors', { ddpm.ones(1) }) end, 'expected tensor names')
      H.raises(function() ddpm.save_safetensors(dir .. '/x.safetensors', { a = ddpm.ones(1) }, { k = {} }) end,
        'metadata "k" is a table')
      H.raises(function() ddpm.save_safetensors(dir .. '/x.safetensors', { ['__metadata__'] = ddpm.ones(1) }) end,
        'reserved')
      H.raises(function() ddpm.save_safetensors(dir .. '/x.safetensors', { ['\255'] = ddpm.ones(1) }) end, 'UTF-8')
    end)
    it('unwritable output directories', function()
      H.raises(function() ddpm.save_safetensors(dir .. '/no/such/dir/x.safetensors', { a = ddpm.ones(1) }) end,
        'no/such/dir', 'cannot create a file')
      H.raises(function() ddpm.save_safetensors(dir, { a = ddpm.ones(1) }) end, 'is a directory')
      local ro = dir .. '/ro'
      os.execute("mkdir -p '" .. ro .. "' && chmod a-w '" .. ro .. "'")
      local f = io.open(ro .. '/probe', 'w') -- root ignores permissions: then there is nothing to test
      if f then
        f:close()
        os.remove(ro .. '/probe')
      else
        H.raises(function() ddpm.save_safetensors(ro .. '/x.safetensors', { a = ddpm.ones(1) }) end, 'Permission denied')
      end
    end)
  end)

  it('never destroys the previous file when a save is interrupted', function()
    local path = dir .. '/ckpt.safetensors'
    ddpm.save_safetensors(path, { w = ddpm.arange(10):float() }, { step = '1' })
    -- a child killed mid-write (SIGXFSZ when the file passes 64 KiB) while replacing the file
    local rc = H.run_child(string.format([[
      ddpm.save_safetensors(%q, { w = ddpm.zeros(1000000) }, { step = '2' })
      print('not interrupted')
    ]], path), 'ulimit -f 64;')
    assert.are_not.equal(0, rc)
    local t, meta = ddpm.load_safetensors(path)
    assert.are.equal('1', meta.step)
    assert.are.same({ 10 }, t.w:shape())
    -- a save refused before writing also leaves it alone
    pcall(ddpm.save_safetensors, path, { w = 'not a tensor' })
    assert.are.equal('1', select(2, ddpm.load_safetensors(path)).step)
  end)

  it('reports errors at the caller line', function()
    local ok, err = pcall(function() ddpm.load_safetensors(dir .. '/nope.safetensors') end)
    assert.is_false(ok)
    assert.matches('io_safetensors_spec.lua:%d+: load_safetensors: cannot open', err)
  end)
end)
