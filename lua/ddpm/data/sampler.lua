-- data/sampler.lua: index orders for one epoch (≈ torch.utils.data samplers).  A sampler answers
-- s:__len() and s:indices(generator) -> int64 tensor; the DataLoader passes its generator unless
-- the sampler was given its own.
local ddpm = require 'ddpm'
local T = require 'ddpm.tensor'
local raise = require('ddpm.ffi').raise

local M = {}

local function gen_opt(g) return g and { generator = g } or nil end

local Sequential = {}
Sequential.__index = Sequential
function M.SequentialSampler(n)
  if type(n) == 'table' and n.__len then n = n:__len() end
  return setmetatable({ n = n }, Sequential)
end
function Sequential:__len() return self.n end
function Sequential:indices() return ddpm.arange(self.n) end

local Random = {}
Random.__index = Random
-- RandomSampler(n_or_dataset, {replacement=false, num_samples=, generator=})
function M.RandomSampler(n, opts)
  if type(n) == 'table' and n.__len then n = n:__len() end
  opts = opts or {}
  return setmetatable({ n = n, replacement = opts.replacement or false, num_samples = opts.num_samples or n,
    generator = opts.generator }, Random)
end
function Random:__len() return self.num_samples end
function Random:indices(g)
  g = self.generator or g
  if self.replacement then return ddpm.randint(0, self.n, { self.num_samples }, gen_opt(g)) end
  local parts, left = {}, self.num_samples
  while left > 0 do
    local p = ddpm.randperm(self.n, gen_opt(g))
    if left < self.n then p = p:narrow(0, 0, left) end
    parts[#parts + 1] = p
    left = left - self.n
  end
  return #parts == 1 and parts[1] or ddpm.cat(parts, 0)
end

local Weighted = {}
Weighted.__index = Weighted
-- WeightedRandomSampler(weights, num_samples, {replacement=true, generator=}): sample i drawn with
-- probability weights[i] / sum(weights) (class balancing: weight = 1 / count of its class).
function M.WeightedRandomSampler(weights, num_samples, opts)
  if type(num_samples) == 'table' and opts == nil then opts, num_samples = num_samples, nil end
  opts = opts or {}
  if type(weights) == 'table' and not T.is_tensor(weights) then weights = ddpm.tensor(weights, { dtype = ddpm.float64 }) end
  T.need_tensor(weights, 'weights', 'WeightedRandomSampler')
  if weights:dim() ~= 1 or weights:numel() == 0 then
    raise('WeightedRandomSampler: weights must be a non-empty 1-D sequence, got shape [' .. table.concat(weights:shape(), ', ') .. ']')
  end
  weights = weights:double()
  if weights:min():item() < 0 or weights:sum():item() <= 0 then
    raise('WeightedRandomSampler: weights must be non-negative with a positive sum')
  end
  num_samples = num_samples or weights:numel()
  if type(num_samples) ~= 'number' or num_samples < 1 or num_samples ~= math.floor(num_samples) then
    raise('WeightedRandomSampler: num_samples must be a positive integer, got ' .. tostring(num_samples))
  end
  local replacement = opts.replacement ~= false
  if not replacement and num_samples > weights:numel() then
    raise(string.format('WeightedRandomSampler: %d samples without replacement from %d weights', num_samples, weights:numel()))
  end
  return setmetatable({ weights = weights, num_samples = num_samples, replacement = replacement,
    generator = opts.generator }, Weighted)
end
function Weighted:__len() return self.num_samples end
function Weighted:indices(g)
  return ddpm.multinomial(self.weights, self.num_samples, self.replacement, gen_opt(self.generator or g))
end

-- class_balanced_weights(labels) -> per-sample weights 1 / (count of its class), from one-hot
-- [N, C] or class ids [N]; feed them to WeightedRandomSampler.
function M.class_balanced_weights(labels)
  T.need_tensor(labels, 'labels', 'class_balanced_weights')
  local ids = labels:dim() == 2 and labels:argmax(1) or labels:long()
  local k = ids:max():item() + 1
  local counts = ddpm.zeros(k, { dtype = ddpm.float64 })
  counts:index_add_(0, ids, ddpm.ones(ids:numel(), { dtype = ddpm.float64 }))
  return counts:reciprocal():index_select(0, ids)
end

return M
