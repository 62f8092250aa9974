-- training/data.lua: the training data a script's options name: --data/--labels (.npy as the
-- tutorial ships them), --image-dir (one sub-folder per class of PNGs), or the built-in Angband
-- sprites (default; --tileset bolt for the public-domain tiles only).  Everything is loaded and
-- checked here, before any training starts.
local ddpm = require 'ddpm'
local raise = require('ddpm.ffi').raise

local M = {}

local function fingerprint(images, labels)
  -- enough to notice a resumed run pointed at different data
  local fp = { n = images:size(0), shape = images:shape(), image_sum = images:double():sum():item() }
  if labels then fp.label_columns = labels:size(1) end
  return fp
end

-- load(args, {conditional=true}) -> {dataset=, images=, labels=|nil, num_classes=, class_names=,
--   sample_size=, source=, fingerprint=}
function M.load(args, opts)
  local conditional = opts == nil or opts.conditional ~= false
  local data = rawget(args, 'data')
  local labels_path = conditional and rawget(args, 'labels') or nil
  local image_dir = rawget(args, 'image_dir')
  if data and image_dir then raise('--data and --image-dir are alternatives; pass one of them') end
  if conditional and data and not labels_path then
    raise('--data needs --labels: the one-hot labels (.npy, [N, classes]) of the images')
  end
  if labels_path and not data then raise('--labels needs --data: the images (.npy, uint8 [N, H, W, 3])') end
  local ds, names, source
  if data then
    if labels_path then
      ds = ddpm.data.NpyImageDataset(data, labels_path)
    else
      local u8 = require('ddpm.io.npy').load(data)
      if u8.dtype ~= ddpm.uint8 or u8:dim() ~= 4 or u8:size(3) ~= 3 then
        raise(string.format("'%s' holds %s [%s]; expected uint8 images [N, H, W, 3]", data, tostring(u8.dtype),
          table.concat(u8:shape(), ', ')))
      end
      ds = ddpm.data.TensorDataset(require('ddpm.utils.image').from_uint8(u8))
      ds.images = ds.tensors[1]
    end
    source = data
  elseif image_dir then
    ds = ddpm.data.ImageFolder(image_dir, { size = rawget(args, 'image_size') })
    names = ds.classes
    source = image_dir
  else
    local tileset = rawget(args, 'tileset') or 'both'
    ds = require('ddpm.data.angband').load({ tileset = tileset })
    names = ds.classes
    source = 'angband (' .. tileset .. ')'
  end
  local images = ds.images
  if images:size(0) == 0 then raise(string.format("the data set '%s' is empty", source)) end
  local labels = conditional and ds.labels or nil
  if not conditional and ds.labels then
    -- an unconditional model ignores labels: the loader yields images only
    ds = ddpm.data.TensorDataset(images)
    ds.images = images
  end
  local given = rawget(args, 'class_names')
  local k = labels and labels:size(1) or nil
  if given and #given > 0 then
    if k and #given ~= k then
      raise(string.format('--class-names gives %d names but the labels have %d classes', #given, k))
    end
    names = given
  end
  if k and not names then
    names = {}
    for c = 1, k do names[c] = 'class ' .. (c - 1) end
  end
  local h, w = images:size(2), images:size(3)
  return {
    dataset = ds, images = images, labels = labels, num_classes = k, class_names = names,
    sample_size = h == w and h or { h, w }, source = source, n = images:size(0),
    fingerprint = fingerprint(images, labels),
  }
end

-- the same data as a saved fingerprint? -> true | false, what differs
function M.same(fp, saved)
  if type(saved) ~= 'table' then return true end
  if saved.n ~= fp.n then return false, string.format('%d images, the checkpoint was trained on %d', fp.n, saved.n) end
  if saved.label_columns ~= fp.label_columns then
    return false, string.format('%s label columns, the checkpoint was trained on %s', tostring(fp.label_columns),
      tostring(saved.label_columns))
  end
  if saved.image_sum ~= fp.image_sum then return false, 'different image contents' end
  return true
end

return M
