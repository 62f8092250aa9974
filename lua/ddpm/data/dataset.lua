-- data/dataset.lua: in-memory data sets that keep every sample inside a few big tensors (never a
-- Lua table per sample): TensorDataset, NpyImageDataset (uint8 NHWC + one-hot labels as the
-- reference tutorial ships them) and ImageFolder (one sub-folder per class of PNGs).
-- Protocol used by DataLoader: ds:__len(), ds:get_batch(int64 indices) -> tensors..., and
-- ds:get(i) (0-based, ≈ __getitem__) -> tensors... for a single sample.
local ddpm = require 'ddpm'
local T = require 'ddpm.tensor'
local F = require 'ddpm.ffi'
local image = require 'ddpm.utils.image'
local ffi, C, raise = F.ffi, F.C, F.raise

local M = {}

-- ---- TensorDataset ------------------------------------------------------------------------------
local TensorDataset = {}
TensorDataset.__index = TensorDataset
M.TensorDataset_class = TensorDataset

local function new_tensor_dataset(cls, tensors, op)
  if #tensors == 0 then raise(op .. ': expected at least one tensor') end
  local n
  for i, t in ipairs(tensors) do
    T.need_tensor(t, 'tensor ' .. i, op)
    if t:dim() == 0 then raise(op .. ': tensor ' .. i .. ' is 0-d; expected a first (sample) dimension') end
    if n == nil then n = t:size(0)
    elseif t:size(0) ~= n then
      raise(string.format('%s: size mismatch between tensors: tensor 1 has %d samples, tensor %d has %d', op, n, i,
        t:size(0)))
    end
  end
  return setmetatable({ tensors = tensors, n = n }, cls)
end

-- TensorDataset(t1, t2, ...) as torch.utils.data.TensorDataset
function M.TensorDataset(...)
  return new_tensor_dataset(TensorDataset, { ... }, 'TensorDataset')
end

function TensorDataset:__len() return self.n end
TensorDataset.len = TensorDataset.__len
function TensorDataset:get_batch(idx)
  local out = {}
  for i, t in ipairs(self.tensors) do
    -- a data set kept on the GPU gathers there: move the (small) index, not the data
    local d = t.device
    out[i] = t:index_select(0, d.type == 'cpu' and idx or idx:to(d))
  end
  return unpack(out)
end
function TensorDataset:get(i)
  if type(i) ~= 'number' or i ~= math.floor(i) or i < -self.n or i >= self.n then
    raise(string.format('dataset index %s out of range for %d samples (0-based)', tostring(i), self.n))
  end
  if i < 0 then i = i + self.n end
  local out = {}
  for k, t in ipairs(self.tensors) do out[k] = t:select(0, i) end
  return unpack(out)
end
TensorDataset.__getitem__ = TensorDataset.get

-- ---- helpers ------------------------------------------------------------------------------------------
local function one_hot(labels, num_classes, op)
  local n = labels:size(0)
  local k = num_classes or (n > 0 and labels:max():item() + 1 or 0)
  local eye = ddpm.eye(k, k, { dtype = ddpm.float32 }) -- (eye(k) alone trips a core vararg bug)
  return eye:index_select(0, labels:long())
end

-- uint8 [N, H, W, 3] -> float32 [N, 3, H, W] in value_range (default [-1, 1])
local function images_to_float(u8, opts)
  return image.from_uint8(u8, { value_range = opts and opts.value_range or { -1, 1 } })
end

local function check_images(images, what, op)
  if images.dtype ~= ddpm.uint8 or images:dim() ~= 4 or images:size(3) ~= 3 then
    raise(string.format('%s: %s holds %s [%s]; expected uint8 images [N, H, W, 3] (RGB, as sprites_*.npy)', op, what,
      tostring(images.dtype), table.concat(images:shape(), ', ')))
  end
end

local function labels_to_float(labels, n, what, images_what, op, opts)
  if labels:dim() == 1 and not labels:is_floating_point() then
    labels = one_hot(labels, opts and opts.num_classes, op)
  end
  if labels:dim() ~= 2 then
    raise(string.format('%s: %s holds %s [%s]; expected one-hot labels [N, classes] (or integer class ids [N])', op,
      what, tostring(labels.dtype), table.concat(labels:shape(), ', ')))
  end
  if labels:size(0) ~= n then
    raise(string.format('%s: %s has %d labels but %s has %d images; expected one label row per image', op, what,
      labels:size(0), images_what, n))
  end
  return labels:float()
end

-- ---- NpyImageDataset ------------------------------------------------------------------------------------
local NpyImageDataset = setmetatable({}, { __index = TensorDataset })
NpyImageDataset.__index = NpyImageDataset

-- NpyImageDataset(images_npy, labels_npy, {value_range={-1,1}, num_classes=}) or with tensors
-- instead of paths.  .images float32 [N, 3, H, W], .labels float32 [N, C].
function M.NpyImageDataset(images_src, labels_src, opts)
  local op = 'NpyImageDataset'
  local iw = type(images_src) == 'string' and ("'" .. images_src .. "'") or 'images'
  local lw = type(labels_src) == 'string' and ("'" .. labels_src .. "'") or 'labels'
  local io = require 'ddpm.io.npy'
  local u8 = type(images_src) == 'string' and io.load(images_src) or T.need_tensor(images_src, 'images', op)
  check_images(u8, iw, op)
  local labels = type(labels_src) == 'string' and io.load(labels_src) or T.need_tensor(labels_src, 'labels', op)
  labels = labels_to_float(labels, u8:size(0), lw, iw, op, opts)
  local ds = new_tensor_dataset(NpyImageDataset, { images_to_float(u8, opts), labels }, op)
  ds.images, ds.labels = ds.tensors[1], ds.tensors[2]
  ds.num_classes = labels:size(1)
  return ds
end

-- ---- ImageFolder ------------------------------------------------------------------------------------------
local function list_dir(path, op)
  local buf = ffi.new('char*[1]')
  local n = ffi.new('int64_t[1]')
  if C.ddpm_list_dir(path, buf, n) ~= 0 then raise(op .. ': ' .. F.last_error()) end
  local s = ffi.string(buf[0], n[0])
  C.ddpm_free_buffer(buf[0])
  local entries = {}
  for item in s:gmatch('([^%z]+)%z') do entries[#entries + 1] = { kind = item:sub(1, 1), name = item:sub(2) } end
  return entries
end
M.list_dir = list_dir

-- Load one PNG as uint8 [size, size, 3] on white: box filter for integer factors, else nearest.
local function load_resized(path, size)
  local png = require 'ddpm.io.png'
  local rgba = png.load(path, { mode = 'RGBA' })
  local h, w = rgba:size(0), rgba:size(1)
  if not size then return png.composite_box(rgba, 1) end
  local sh, sw = size[1], size[2]
  if h % sh == 0 and w % sw == 0 and h / sh == w / sw then return png.composite_box(rgba, h / sh) end
  return image.resize_nearest(png.composite_box(rgba, 1), sh, sw, 0)
end

local ImageFolder = setmetatable({}, { __index = TensorDataset })
ImageFolder.__index = ImageFolder

-- ImageFolder(root, {size=16 | {h, w}, extensions={'.png'}, value_range={-1, 1}}): classes are the
-- sub-folders in sorted order (ds.classes, ds.class_to_idx); labels are one-hot float32.
function M.ImageFolder(root, opts)
  local op = 'ImageFolder'
  opts = opts or {}
  if type(root) ~= 'string' then raise(op .. ': root must be a directory path, got ' .. type(root)) end
  local size = opts.size
  if type(size) == 'number' then size = { size, size } end
  if size ~= nil and (type(size) ~= 'table' or #size ~= 2) then raise(op .. ': size must be a number or {height, width}') end
  local exts = opts.extensions or { '.png' }
  local classes, files, targets = {}, {}, {}
  for _, e in ipairs(list_dir(root, op)) do
    if e.kind == 'd' and e.name:sub(1, 1) ~= '.' then classes[#classes + 1] = e.name end
  end
  if #classes == 0 then raise(string.format("%s: '%s' has no class sub-folders; expected root/<class>/<image>.png", op, root)) end
  for ci, cls in ipairs(classes) do
    local found = 0
    for _, e in ipairs(list_dir(root .. '/' .. cls, op)) do
      local lower = e.name:lower()
      local ok = false
      for _, x in ipairs(exts) do if lower:sub(-#x) == x then ok = true end end
      if e.kind == 'f' and ok then
        files[#files + 1] = root .. '/' .. cls .. '/' .. e.name
        targets[#targets + 1] = ci - 1
        found = found + 1
      end
    end
    if found == 0 then
      raise(string.format("%s: class folder '%s/%s' holds no %s files", op, root, cls, table.concat(exts, '/')))
    end
  end
  local imgs = {}
  local first
  for i, f in ipairs(files) do
    local img = load_resized(f, size)
    if not first then first = img:shape()
    elseif img:size(0) ~= first[1] or img:size(1) ~= first[2] then
      raise(string.format("%s: '%s' is %dx%d but earlier images are %dx%d; pass {size=} to resize", op, f,
        img:size(1), img:size(0), first[2], first[1]))
    end
    imgs[i] = img
  end
  local u8 = ddpm.stack(imgs, 0)
  local labels = one_hot(ddpm.tensor(targets, { dtype = ddpm.int64 }), #classes, op)
  local ds = new_tensor_dataset(ImageFolder, { images_to_float(u8, opts), labels }, op)
  ds.images, ds.labels = ds.tensors[1], ds.tensors[2]
  ds.classes, ds.class_to_idx, ds.files = classes, {}, files
  for i, c in ipairs(classes) do ds.class_to_idx[c] = i - 1 end
  ds.num_classes = #classes
  return ds
end

return M
