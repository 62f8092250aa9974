-- metrics/generate.lua: the samples a score is computed on: per_class images of every class from a
-- conditional pipeline, class by class (so the first k of each class also make a labelled grid),
-- in batches, with one generator so a seed gives the same starting noise for every model and every
-- guidance scale compared.
local ddpm = require 'ddpm'
local raise = require('ddpm.ffi').raise

local M = {}

-- generate(pipe, {per_class=, guidance_scale=1, num_inference_steps=, seed=0, batch_size=128,
--   progress=false}) -> images float [K * per_class, 3, H, W] in [0, 1], class ids int64 [K * per_class]
function M.generate(pipe, opts)
  opts = opts or {}
  local k = pipe.num_classes
  if not k then raise('metrics.generate: expected a conditional pipeline (it knows its number of classes)') end
  local per = opts.per_class or 16
  if type(per) ~= 'number' or per < 1 or per ~= math.floor(per) then
    raise('metrics.generate: per_class must be a positive integer, got ' .. tostring(per))
  end
  local gs = opts.guidance_scale or 1
  if type(gs) ~= 'number' or gs < 0 then raise('metrics.generate: guidance_scale must be a number >= 0, got ' .. tostring(gs)) end
  local n = k * per
  local ids = ddpm.arange(n):div(per):floor():long()
  local g = ddpm.Generator():manual_seed(opts.seed or 0)
  local bs = opts.batch_size or 128
  local parts = {}
  for s = 0, n - 1, bs do
    local b = math.min(bs, n - s)
    local out = pipe(ids:narrow(0, s, b), { generator = g, guidance_scale = gs, num_inference_steps = opts.num_inference_steps,
      eta = opts.eta, progress = opts.progress or false })
    parts[#parts + 1] = out.images
  end
  return ddpm.cat(parts, 0), ids
end

-- grid_subset(images, ids, per_class, k) -> the first k images of every class (rows of a grid)
function M.grid_subset(images, per_class, k)
  local n = images:size(0) / per_class
  local rows = {}
  for c = 0, n - 1 do
    for j = 0, math.min(k, per_class) - 1 do rows[#rows + 1] = c * per_class + j end
  end
  return images:index_select(0, ddpm.tensor(rows, { dtype = ddpm.int64 }))
end

return M
