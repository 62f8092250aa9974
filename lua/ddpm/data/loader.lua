-- data/loader.lua: DataLoader (≈ torch.utils.data.DataLoader) for in-memory data sets: each batch
-- is one index_select per tensor (contiguous, no per-sample Lua work), optional batch transform and
-- device move.  Deterministic for a generator, and resumable mid-epoch from loader:state_dict().
--
--   local loader = ddpm.data.DataLoader(ds, {batch_size = 128, shuffle = true, generator = g})
--   for images, labels in loader do ... end              -- one epoch per loop, as in Python
--   for images, labels in loader:iter() do ... end       -- the same, explicitly
--   for i, images, labels in loader:enumerate() do ... end  -- i counts batches from 0
--   #loader  /  loader:__len()                          -- batches per epoch
--
-- A loop that ends early (break) abandons its epoch; the next loop starts a new one.  After
-- loader:load_state_dict(s) the next loop continues the saved epoch at the saved batch.
local ddpm = require 'ddpm'
local T = require 'ddpm.tensor'
local raise = require('ddpm.ffi').raise
local samplers = require 'ddpm.data.sampler'

local M = {}
local Loader = {}
Loader.__index = Loader

local function gen_state(g) return g and g:get_state() or nil end

function M.DataLoader(dataset, opts)
  opts = opts or {}
  if type(dataset) ~= 'table' or type(dataset.__len) ~= 'function' or
      (type(dataset.get_batch) ~= 'function' and type(dataset.get) ~= 'function') then
    raise('DataLoader: dataset must provide __len() and get_batch(indices) or get(i) (see ddpm.data.TensorDataset)')
  end
  local bs = opts.batch_size == nil and 1 or opts.batch_size
  if type(bs) ~= 'number' or bs < 1 or bs ~= math.floor(bs) then
    raise('DataLoader: batch_size must be a positive integer, got ' .. tostring(bs))
  end
  if opts.sampler and opts.shuffle then
    raise('DataLoader: sampler option is mutually exclusive with shuffle')
  end
  if opts.generator ~= nil and not ddpm.is_generator(opts.generator) then
    raise('DataLoader: generator must be a ddpm.Generator, got ' .. type(opts.generator))
  end
  if opts.transform ~= nil and type(opts.transform) ~= 'function' and not getmetatable(opts.transform) then
    raise('DataLoader: transform must be callable as transform(images, generator)')
  end
  local sampler = opts.sampler
  if not sampler then
    sampler = opts.shuffle and samplers.RandomSampler(dataset:__len()) or samplers.SequentialSampler(dataset:__len())
  elseif type(sampler) ~= 'table' or type(sampler.indices) ~= 'function' or type(sampler.__len) ~= 'function' then
    raise('DataLoader: sampler must provide indices(generator) and __len() (see ddpm.data.WeightedRandomSampler)')
  end
  local self = setmetatable({
    dataset = dataset, batch_size = bs, drop_last = opts.drop_last or false, sampler = sampler,
    transform = opts.transform, device = opts.device, generator = opts.generator,
    epoch = -1,          -- index of the current (or last) epoch
    position = 0,        -- batches handed out in the current epoch
    _epoch_gen = nil,    -- generator state just before this epoch's order was drawn
    _resume = nil,
  }, Loader)
  -- A userdata face so that #loader and `for x, y in loader do` work in LuaJIT (Lua 5.1 honours
  -- __len and __call only on userdata); fields and methods live in the table behind it.
  local proxy = newproxy(true)
  local mt = getmetatable(proxy)
  mt.__index = self
  mt.__newindex = self
  mt.__len = function() return self:__len() end
  mt.__call = function(_, _, ctrl)
    if ctrl == nil or not self._active then self._active = self:_make_iter(false) end
    return self._active()
  end
  mt.__tostring = function()
    return string.format('DataLoader(batch_size=%d, batches=%d, epoch=%d, position=%d)', bs, self:__len(), self.epoch,
      self.position)
  end
  self._proxy = proxy
  return proxy
end

function Loader:__len()
  local n = self.sampler:__len()
  if self.drop_last then return math.floor(n / self.batch_size) end
  return math.ceil(n / self.batch_size)
end
Loader.len = Loader.__len

-- The generator used for orders and transforms: the caller's, or a private one seeded once from
-- the default generator (so ddpm.manual_seed decides it, and its state can be saved).
function Loader:_gen()
  if not self.generator then
    local seed = ddpm.randint(0, 2 ^ 31 - 1, { 2 }):tolist()
    self.generator = ddpm.Generator():manual_seed(seed[1] * 2 ^ 21 + seed[2] % 2 ^ 21)
  end
  return self.generator
end

local function fetch(ds, idx)
  if ds.get_batch then return { ds:get_batch(idx) } end
  -- generic datasets: stack per-sample tensors
  local cols = {}
  for k, i in ipairs(idx:tolist()) do
    local items = { ds:get(i) }
    for c, v in ipairs(items) do
      cols[c] = cols[c] or {}
      cols[c][k] = T.is_tensor(v) and v or ddpm.tensor(v)
    end
  end
  local out = {}
  for c, list in ipairs(cols) do out[c] = ddpm.stack(list, 0) end
  return out
end

function Loader:_make_iter(numbered)
  local g = self:_gen()
  local order, start
  if self._resume then
    local r = self._resume
    self._resume = nil
    g:set_state(r.epoch_generator)
    order = self.sampler:indices(g)
    g:set_state(r.generator)
    self.epoch, self.position, self._epoch_gen = r.epoch, r.position, r.epoch_generator
    start = r.position
  else
    self.epoch = self.epoch + 1
    self._epoch_gen = gen_state(g)
    order = self.sampler:indices(g)
    self.position = 0
    start = 0
  end
  local n = order:numel()
  local bs, nb = self.batch_size, self:__len()
  local b = start
  return function()
    if b >= nb then
      self._active = nil
      return nil
    end
    local len = math.min(bs, n - b * bs)
    local idx = order:narrow(0, b * bs, len)
    local items = fetch(self.dataset, idx)
    if self.transform then items[1] = self.transform(items[1], g) end
    if self.device then for k = 1, #items do items[k] = items[k]:to(self.device) end end
    b = b + 1
    self.position = b
    if numbered then return b - 1, unpack(items) end
    return unpack(items)
  end
end

-- for images, labels in loader:iter() do ... end
function Loader:iter() return self:_make_iter(false) end
-- for i, images, labels in loader:enumerate() do ... end   (i from 0, as Python's enumerate)
function Loader:enumerate() return self:_make_iter(true) end

-- state_dict(): where the loader stands (epoch, batches consumed, generator states), to be saved
-- with ddpm.save next to the model; load_state_dict(s) makes the next loop resume right there.
function Loader:state_dict()
  local g = self:_gen()
  return {
    epoch = self.epoch, position = self.position,
    epoch_generator = self._epoch_gen or gen_state(g), generator = gen_state(g),
    batch_size = self.batch_size, num_batches = self:__len(),
  }
end

function Loader:load_state_dict(s)
  if type(s) ~= 'table' or type(s.epoch) ~= 'number' or type(s.position) ~= 'number' or type(s.generator) ~= 'table'
      or type(s.epoch_generator) ~= 'table' then
    raise('DataLoader:load_state_dict: expected a table from state_dict() {epoch, position, generator, epoch_generator}')
  end
  if s.batch_size and s.batch_size ~= self.batch_size then
    raise(string.format('DataLoader:load_state_dict: saved with batch_size %d, this loader has %d', s.batch_size,
      self.batch_size))
  end
  local g = self:_gen()
  if s.position >= self:__len() then
    -- the saved epoch was complete: the next loop starts the following epoch
    g:set_state(s.generator)
    self.epoch, self.position, self._epoch_gen, self._resume = s.epoch, s.position, s.epoch_generator, nil
  else
    self._resume = { epoch = s.epoch, position = s.position, generator = s.generator, epoch_generator = s.epoch_generator }
    self.epoch, self.position = s.epoch, s.position
  end
  self._active = nil
end

return M
