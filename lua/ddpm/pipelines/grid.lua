-- pipelines/grid.lua: the tutorial's sample sheet: per_class samples of every class, one row per
-- class labelled with its name, enlarged with nearest-neighbour so the pixel art stays crisp, as a
-- PNG.  Used by the training scripts at the end of a run and by scripts/sample.lua.
local ddpm = require 'ddpm'
local image = require 'ddpm.utils.image'
local raise = require('ddpm.ffi').raise

local M = {}

local function copy_sampling_opts(opts)
  return { generator = opts.generator, num_inference_steps = opts.num_inference_steps, eta = opts.eta,
    progress = opts.progress, callback = opts.callback, cuda_graph = opts.cuda_graph }
end

-- class_grid(pipe, {path=, per_class=4, classes={ids} | nil (all), class_names=, guidance_scale=,
--   generator=, num_inference_steps=, eta=, scale=8, progress=}) -> uint8 grid [H, W, 3], images
function M.class_grid(pipe, opts)
  opts = opts or {}
  local k = pipe.num_classes
  if not k then raise('class_grid: the pipeline does not know its number of classes') end
  local per = opts.per_class or 4
  if type(per) ~= 'number' or per < 1 or per ~= math.floor(per) then
    raise('class_grid: per_class must be a positive integer, got ' .. tostring(per))
  end
  local ids = opts.classes
  if ids == nil then
    ids = {}
    for c = 0, k - 1 do ids[#ids + 1] = c end
  end
  local names = opts.class_names or pipe.class_names
  local labels, row_names = {}, {}
  for r, c in ipairs(ids) do
    if type(c) ~= 'number' or c < 0 or c >= k or c ~= math.floor(c) then
      raise(string.format('class_grid: class %s is out of range (0..%d)', tostring(c), k - 1))
    end
    row_names[r] = names and names[c + 1] or ('class ' .. c)
    for _ = 1, per do labels[#labels + 1] = c end
  end
  local o = copy_sampling_opts(opts)
  o.guidance_scale = opts.guidance_scale
  local images = pipe(ddpm.tensor(labels, { dtype = ddpm.int64 }), o).images
  local grid
  if opts.path then
    grid = image.save_image(images, opts.path, { nrow = per, scale = opts.scale, labels = row_names })
  end
  return grid, images
end

-- sample_grid(pipe, {path=, n=16, nrow=, ...}) for an unconditional pipeline
function M.sample_grid(pipe, opts)
  opts = opts or {}
  local n = opts.n or 16
  local o = copy_sampling_opts(opts)
  o.batch_size = n
  local images = pipe(o).images
  local grid
  if opts.path then
    grid = image.save_image(images, opts.path, { nrow = opts.nrow or math.ceil(math.sqrt(n)), scale = opts.scale })
  end
  return grid, images
end

return M
