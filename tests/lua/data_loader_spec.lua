-- data_loader_spec.lua: DataLoader batching (contiguous batches, drop_last, lengths, both loop
-- idioms), determinism for a generator, exact mid-epoch resume through ddpm.save/ddpm.load,
-- samplers (WeightedRandomSampler class balancing) and the batch flip augmentation.
local ddpm = require 'ddpm'
local H = require 'formats_helpers'

local function ids_of(loader, iter)
  local out = {}
  for x, y in (iter or loader:iter()) do
    for _, v in ipairs(y:tolist()) do out[#out + 1] = v end
  end
  return out
end

local function make_ds(n)
  local x = ddpm.arange(n):float():view(n, 1, 1, 1):expand(n, 3, 2, 4):contiguous()
  return ddpm.data.TensorDataset(x, ddpm.arange(n))
end

describe('DataLoader', function()
  it('batches in order, with lengths, drop_last and both loop idioms', function()
    local ds = make_ds(10)
    local loader = ddpm.data.DataLoader(ds, { batch_size = 4 })
    assert.are.equal(3, #loader)
    assert.are.equal(3, loader:__len())
    local sizes, seen = {}, {}
    for x, y in loader do
      sizes[#sizes + 1] = x:size(0)
      assert.is_true(x:is_contiguous())
      assert.are.same({ x:size(0), 3, 2, 4 }, x:shape())
      for _, v in ipairs(y:tolist()) do seen[#seen + 1] = v end
    end
    assert.are.same({ 4, 4, 2 }, sizes)
    assert.are.same({ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, seen)
    local dl = ddpm.data.DataLoader(ds, { batch_size = 4, drop_last = true })
    assert.are.equal(2, #dl)
    assert.are.equal(8, #ids_of(dl))
    local count = 0
    for i, x, y in loader:enumerate() do
      assert.are.equal(count, i)
      count = count + 1
    end
    assert.are.equal(3, count)
    -- a broken loop abandons its epoch; the next loop starts over
    for _ in loader do break end
    assert.are.same(seen, ids_of(loader, loader))
  end)

  it('shuffles every index once per epoch, deterministically for a seed', function()
    local ds = make_ds(50)
    local function run(seed)
      local loader = ddpm.data.DataLoader(ds, { batch_size = 8, shuffle = true, generator = ddpm.Generator():manual_seed(seed) })
      return ids_of(loader), ids_of(loader)
    end
    local a1, a2 = run(7)
    local b1, b2 = run(7)
    assert.are.same(a1, b1)
    assert.are.same(a2, b2)
    assert.are_not.same(a1, a2) -- a new order each epoch
    local sorted = { unpack(a1) }
    table.sort(sorted)
    for i = 1, 50 do assert.are.equal(i - 1, sorted[i]) end
    -- without a generator, ddpm.manual_seed decides
    ddpm.manual_seed(3)
    local c = ids_of(ddpm.data.DataLoader(ds, { batch_size = 8, shuffle = true }))
    ddpm.manual_seed(3)
    assert.are.same(c, ids_of(ddpm.data.DataLoader(ds, { batch_size = 8, shuffle = true })))
  end)

  it('resumes exactly mid-epoch from a saved state, augmentation included', function()
    local ds = make_ds(30)
    local function new_loader()
      return ddpm.data.DataLoader(ds, { batch_size = 4, shuffle = true, generator = ddpm.Generator():manual_seed(11),
        transform = ddpm.data.RandomHorizontalFlip(0.5) })
    end
    -- reference: two full epochs
    local ref = new_loader()
    local want = {}
    for _ = 1, 2 do for x, y in ref do want[#want + 1] = { x, y } end end
    -- interrupted: stop after 3 batches of epoch 2, save, restore into a fresh loader
    local l1 = new_loader()
    local got = {}
    for x, y in l1 do got[#got + 1] = { x, y } end
    local k = 0
    for x, y in l1 do
      got[#got + 1] = { x, y }
      k = k + 1
      if k == 3 then break end
    end
    local dir = H.tmpdir('loader')
    ddpm.save({ loader = l1:state_dict() }, dir .. '/ckpt.safetensors')
    local l2 = new_loader()
    l2:load_state_dict(ddpm.load(dir .. '/ckpt.safetensors').loader)
    H.rmdir(dir)
    assert.are.equal(1, l2.epoch)
    for x, y in l2 do got[#got + 1] = { x, y } end
    assert.are.equal(#want, #got)
    for i = 1, #want do
      assert.is_true(want[i][2]:equal(got[i][2]), 'labels of batch ' .. i)
      assert.is_true(want[i][1]:equal(got[i][1]), 'images of batch ' .. i)
    end
    -- the next epoch after the resumed one matches too
    local nxt = {}
    for _, y in ref do nxt[#nxt + 1] = y end
    local i = 0
    for _, y in l2 do
      i = i + 1
      assert.is_true(nxt[i]:equal(y))
    end
  end)

  it('balances classes with WeightedRandomSampler', function()
    -- 90 samples of class 0, 10 of class 1
    local labels = ddpm.cat({ ddpm.zeros(90, { dtype = ddpm.int64 }), ddpm.ones(10, { dtype = ddpm.int64 }) })
    local ds = ddpm.data.TensorDataset(ddpm.arange(100):float(), labels)
    local w = ddpm.data.class_balanced_weights(labels)
    assert.are.equal(1 / 90, w:select(0, 0):item())
    local sampler = ddpm.data.WeightedRandomSampler(w, 4000, { generator = ddpm.Generator():manual_seed(5) })
    local loader = ddpm.data.DataLoader(ds, { batch_size = 500, sampler = sampler })
    assert.are.equal(8, #loader)
    local ones = 0
    for _, y in loader do ones = ones + y:sum():item() end
    assert.is_true(ones > 1800 and ones < 2200, 'class 1 drawn ' .. ones .. ' of 4000 times')
    H.raises(function() ddpm.data.DataLoader(ds, { sampler = sampler, shuffle = true }) end, 'mutually exclusive')
    H.raises(function() ddpm.data.WeightedRandomSampler(ddpm.tensor({ -1, 1 }), 2) end, 'non-negative')
    H.raises(function() ddpm.data.WeightedRandomSampler({ 1, 1 }, 3, { replacement = false }) end, 'without replacement')
  end)

  it('flips images per sample with RandomHorizontalFlip, reproducibly', function()
    local x = ddpm.arange(4):float():view(1, 1, 1, 4):expand(64, 3, 2, 4):contiguous()
    local flip = ddpm.data.RandomHorizontalFlip(0.5)
    local y = flip(x, ddpm.Generator():manual_seed(1))
    local y2 = flip(x, ddpm.Generator():manual_seed(1))
    assert.is_true(y:equal(y2))
    local flipped = 0
    for i = 0, 63 do
      local row = y:select(0, i):select(0, 2):select(0, 1):tolist()
      if row[1] == 3 then
        flipped = flipped + 1
        assert.are.same({ 3, 2, 1, 0 }, row)
      else
        assert.are.same({ 0, 1, 2, 3 }, row)
      end
    end
    assert.is_true(flipped > 16 and flipped < 48)
    assert.is_true(ddpm.data.RandomHorizontalFlip(1)(x):equal(ddpm.utils.flip(x, 3)))
    assert.is_true(ddpm.data.RandomHorizontalFlip(0)(x):equal(x))
    H.raises(function() ddpm.data.RandomHorizontalFlip(2) end, 'p must be in [0, 1]')
  end)

  it('accepts datasets that only provide get(i), and refuses bad arguments', function()
    local ds = { n = 5 }
    function ds:__len() return self.n end
    function ds:get(i) return ddpm.full({ 2 }, i), i end
    local loader = ddpm.data.DataLoader(ds, { batch_size = 2 })
    local got = {}
    for x, y in loader do got[#got + 1] = y:tolist() end
    assert.are.same({ { 0, 1 }, { 2, 3 }, { 4 } }, got)
    H.raises(function() ddpm.data.DataLoader({}, {}) end, 'dataset must provide')
    H.raises(function() ddpm.data.DataLoader(ds, { batch_size = 0 }) end, 'batch_size must be a positive integer')
    H.raises(function() ddpm.data.DataLoader(ds, { generator = 3 }) end, 'generator must be a ddpm.Generator')
    H.raises(function() loader:load_state_dict({}) end, 'expected a table from state_dict()')
  end)
end)
