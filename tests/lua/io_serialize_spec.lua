-- io_serialize_spec.lua: ddpm.save / ddpm.load of state dicts and checkpoint-like tables: exact
-- numbers, shared tensors, generators, odd keys, plain safetensors files, and clear errors.
local ddpm = require 'ddpm'
local H = require 'formats_helpers'

describe('ddpm.save / ddpm.load', function()
  local dir
  setup(function() dir = H.tmpdir('ser') end)
  teardown(function() H.rmdir(dir) end)

  it('keeps a flat state dict readable as an ordinary safetensors file', function()
    local sd = { ['0.weight'] = ddpm.randn(64, 5), ['0.bias'] = ddpm.randn(64), ['2.weight'] = ddpm.randn(64, 64) }
    local path = dir .. '/label_net.safetensors'
    ddpm.save(sd, path)
    local raw, meta = ddpm.load_safetensors(path)
    assert.are.equal('pt', meta.format)
    for k, v in pairs(sd) do assert.is_true(raw[k]:equal(v), k) end
    local back = ddpm.load(path)
    for k, v in pairs(sd) do assert.is_true(back[k]:equal(v), k) end
  end)

  it('restores a checkpoint: nested tables, exact numbers, generators, shared tensors', function()
    local g = ddpm.Generator():manual_seed(1234)
    ddpm.rand(10, { generator = g })
    local w = ddpm.randn(3, 3)
    local obj = {
      model = { weight = w }, ema = { weight = w },
      optimizer = { state = { { step = 7, exp_avg = ddpm.zeros(3, 3, { dtype = ddpm.float64 }) } },
        param_groups = { { lr = 1e-4, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0 } } },
      rng = g, epoch = 12, tricky = 0.1 + 0.2, big = 2 ^ 60, neg0 = -0.0, huge = math.huge, nan = 0 / 0,
      name = 'café', bytes = 'a\0b\255', on = true, off = false, empty = {},
      odd = { [1] = 'one', [3] = 'three', x = 1, __tensor__ = 'not a tensor' },
      list = { 1, 'two', { three = 3 } },
    }
    local path = dir .. '/ckpt.safetensors'
    ddpm.save(obj, path)
    local b = ddpm.load(path)
    assert.is_true(b.model.weight:equal(w))
    assert.are.equal(b.model.weight, b.ema.weight) -- stored once, restored as one tensor
    assert.are.equal(ddpm.float64, b.optimizer.state[1].exp_avg.dtype)
    assert.are.equal(7, b.optimizer.state[1].step)
    assert.are.same(obj.optimizer.param_groups, b.optimizer.param_groups)
    assert.are.equal(0.1 + 0.2, b.tricky)
    assert.are.equal(2 ^ 60, b.big)
    assert.are.equal(-math.huge, 1 / b.neg0)
    assert.are.equal(math.huge, b.huge)
    assert.is_true(b.nan ~= b.nan)
    assert.are.equal('café', b.name)
    assert.are.equal('a\0b\255', b.bytes)
    assert.is_true(b.on)
    assert.is_false(b.off)
    assert.are.same({}, b.empty)
    assert.are.same(obj.odd, b.odd)
    assert.are.same({ 1, 'two', { three = 3 } }, b.list)
    -- the generator resumes the same stream
    assert.is_true(ddpm.is_generator(b.rng))
    assert.is_true(ddpm.rand(5, { generator = b.rng }):equal(ddpm.rand(5, { generator = g })))
  end)

  it('saves a single tensor and keeps requires_grad', function()
    local p = ddpm.randn(4):requires_grad_()
    ddpm.save(p, dir .. '/t.safetensors')
    local b = ddpm.load(dir .. '/t.safetensors')
    assert.is_true(b:equal(p:detach()))
    assert.is_true(b.requires_grad)
  end)

  it('loads plain safetensors files as state dicts and honours map_location', function()
    ddpm.save_safetensors(dir .. '/plain.safetensors', { a = ddpm.ones(2) })
    local sd = ddpm.load(dir .. '/plain.safetensors', { map_location = 'cpu' })
    assert.is_true(sd.a:equal(ddpm.ones(2)))
  end)

  it('refuses what it cannot store, naming where it is', function()
    H.raises(function() ddpm.save({ a = { b = print } }, dir .. '/x.safetensors') end, 'obj.a.b is a function')
    local cyc = {}
    cyc.self = cyc
    H.raises(function() ddpm.save(cyc, dir .. '/x.safetensors') end, 'cycle')
    H.raises(function() ddpm.save({}, nil) end, 'path must be a string')
    H.raises(function() ddpm.save({ [{}] = 1 }, dir .. '/x.safetensors') end, 'table key')
    assert.is_false(H.exists(dir .. '/x.safetensors'))
  end)

  it('reports corrupt structure metadata and missing files clearly', function()
    local p = dir .. '/corrupt.safetensors'
    ddpm.save_safetensors(p, { a = ddpm.ones(1) }, { ['ddpm.structure'] = '{"a": {"__tensor__": "zzz"}}' })
    H.raises(function() ddpm.load(p) end, 'corrupt.safetensors', 'tensor "zzz" is missing')
    ddpm.save_safetensors(p, { a = ddpm.ones(1) }, { ['ddpm.structure'] = '{"a": ' })
    H.raises(function() ddpm.load(p) end, 'corrupt.safetensors', 'not valid JSON')
    H.raises(function() ddpm.load(dir .. '/none.safetensors') end, 'none.safetensors', 'No such file')
  end)
end)
