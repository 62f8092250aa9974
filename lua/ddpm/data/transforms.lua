-- data/transforms.lua: batch augmentations applied by the DataLoader as transform(images,
-- generator) -> images on whole [N, C, H, W] batches with tensor ops (a per-sample random choice
-- is a mask, never a Lua loop over samples).  Randomness comes from the given generator so a seed
-- and a saved loader state reproduce the same augmented batches.
local ddpm = require 'ddpm'
local T = require 'ddpm.tensor'
local raise = require('ddpm.ffi').raise

local M = {}

local function callable(cls) cls.__index = cls; cls.__call = function(self, x, g) return self:forward(x, g) end; return cls end

-- RandomHorizontalFlip(p=0.5): each image mirrored left-right with probability p
local Flip = callable({})
function M.RandomHorizontalFlip(p)
  p = p == nil and 0.5 or p
  if type(p) ~= 'number' or p < 0 or p > 1 then raise('RandomHorizontalFlip: p must be in [0, 1], got ' .. tostring(p)) end
  return setmetatable({ p = p }, Flip)
end
function Flip:forward(x, g)
  T.need_tensor(x, 'images', 'RandomHorizontalFlip')
  if x:dim() ~= 4 then raise('RandomHorizontalFlip: expected images [N, C, H, W], got ' .. x:dim() .. ' dims') end
  local n, w = x:size(0), x:size(3)
  local u = ddpm.rand(n, { generator = g })
  local mask = u:lt(ddpm.full({}, self.p)):view(n, 1, 1, 1)
  local flipped = x:index_select(3, ddpm.arange(w - 1, -1, -1, { device = x.device }))
  return ddpm.where(mask, flipped, x)
end

-- RandomVerticalFlip(p=0.5)
local VFlip = callable({})
function M.RandomVerticalFlip(p)
  return setmetatable({ p = p == nil and 0.5 or p }, VFlip)
end
function VFlip:forward(x, g)
  local n, h = x:size(0), x:size(2)
  local mask = ddpm.rand(n, { generator = g }):lt(ddpm.full({}, self.p)):view(n, 1, 1, 1)
  return ddpm.where(mask, x:index_select(2, ddpm.arange(h - 1, -1, -1, { device = x.device })), x)
end

-- Compose({t1, t2, ...})
local Compose = callable({})
function M.Compose(list)
  if type(list) ~= 'table' then raise('Compose: expected a list of transforms') end
  return setmetatable({ transforms = list }, Compose)
end
function Compose:forward(x, g)
  for _, t in ipairs(self.transforms) do x = t(x, g) end
  return x
end

-- Lambda(fn): wraps a function(images, generator) -> images
function M.Lambda(fn) return setmetatable({ fn = fn }, callable({ forward = function(self, x, g) return self.fn(x, g) end })) end

return M
