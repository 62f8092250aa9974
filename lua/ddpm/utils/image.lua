-- utils/image.lua: image grids and PNG output for samples (≈ torchvision.utils.make_grid and
-- save_image), uint8 conversions, nearest-neighbour enlargement.  All pixel work is tensor ops.
local ddpm = require 'ddpm'
local T = require 'ddpm.tensor'
local raise = require('ddpm.ffi').raise
local font = require 'ddpm.utils.font'

local M = {}

local function as_batch(x, op)
  if type(x) == 'table' and not T.is_tensor(x) then
    if #x == 0 then raise(op .. ': expected a tensor [N, C, H, W] or a non-empty list of [C, H, W] tensors') end
    x = ddpm.stack(x, 0)
  end
  T.need_tensor(x, 'tensor', op)
  if x:dim() == 2 then x = x:unsqueeze(0) end
  if x:dim() == 3 then
    if x:size(0) == 1 then x = ddpm.cat({ x, x, x }, 0) end
    x = x:unsqueeze(0)
  end
  if x:dim() ~= 4 then
    raise(string.format('%s: expected images [N, C, H, W], [C, H, W] or [H, W], got shape [%s]', op,
      table.concat(x:shape(), ', ')))
  end
  if x:size(1) == 1 then x = ddpm.cat({ x, x, x }, 1) end
  return x
end

local function norm_(img, lo, hi)
  return (img:clamp(lo, hi) - lo) / math.max(hi - lo, 1e-5)
end

-- make_grid(images, {nrow=8, padding=2, normalize=false, value_range={lo, hi}, scale_each=false,
-- pad_value=0}) -> [C, H', W'], with torchvision's layout (padding before every cell and at the end).
function M.make_grid(tensor, opts)
  opts = opts or {}
  local nrow, padding, pad_value = opts.nrow or 8, opts.padding or 2, opts.pad_value or 0
  local x = as_batch(tensor, 'make_grid')
  if opts.normalize then
    local vr = opts.value_range
    if vr ~= nil and (type(vr) ~= 'table' or #vr ~= 2) then raise('make_grid: value_range must be {low, high}') end
    local function norm_range(t)
      if vr then return norm_(t, vr[1], vr[2]) end
      return norm_(t, t:min():item(), t:max():item())
    end
    if opts.scale_each then
      local parts = {}
      for i = 0, x:size(0) - 1 do parts[i + 1] = norm_range(x:select(0, i)) end
      x = ddpm.stack(parts, 0)
    else
      x = norm_range(x)
    end
  end
  if x:size(0) == 1 then return x:select(0, 0) end
  local n, c, h, w = x:size(0), x:size(1), x:size(2), x:size(3)
  local xmaps = math.min(nrow, n)
  local ymaps = math.ceil(n / xmaps)
  local height, width = h + padding, w + padding
  local grid = ddpm.full({ c, height * ymaps + padding, width * xmaps + padding }, pad_value,
    { dtype = x.dtype, device = x.device })
  local k = 0
  for y = 0, ymaps - 1 do
    for xx = 0, xmaps - 1 do
      if k >= n then break end
      grid:narrow(1, y * height + padding, h):narrow(2, xx * width + padding, w):copy_(x:select(0, k))
      k = k + 1
    end
  end
  return grid
end

-- to_uint8(images, {value_range={lo, hi}}) float [..., C, H, W] -> uint8 [..., H, W, C]
-- (torchvision's save_image rounding: x * 255 + 0.5, clamped, truncated).  Default range [0, 1].
function M.to_uint8(t, opts)
  T.need_tensor(t, 'images', 'to_uint8')
  if t.dtype == ddpm.uint8 then return t end
  local vr = opts and opts.value_range
  local x = t:float()
  if vr then x = norm_(x, vr[1], vr[2]) end
  x = (x * 255 + 0.5):clamp(0, 255):byte()
  local nd = x:dim()
  if nd == 3 then return x:permute(1, 2, 0):contiguous() end
  if nd == 4 then return x:permute(0, 2, 3, 1):contiguous() end
  if nd == 2 then return x end
  raise('to_uint8: expected images [C, H, W] or [N, C, H, W], got ' .. nd .. ' dims')
end

-- from_uint8(u8 [..., H, W, C], {value_range={-1, 1}}) -> float32 [..., C, H, W]; the default
-- range [-1, 1] is the diffusion convention ((x / 255 - 0.5) / 0.5, as ToTensor + Normalize(0.5, 0.5)).
function M.from_uint8(u8, opts)
  T.need_tensor(u8, 'images', 'from_uint8')
  if u8.dtype ~= ddpm.uint8 then raise('from_uint8: expected uint8 images, got ' .. tostring(u8.dtype)) end
  local vr = opts and opts.value_range or { -1, 1 }
  local nd = u8:dim()
  local x
  -- one float copy in NCHW order, then in place: the peak stays at one copy of the data set
  if nd == 3 then x = u8:permute(2, 0, 1):float()
  elseif nd == 4 then x = u8:permute(0, 3, 1, 2):float()
  else raise('from_uint8: expected images [H, W, C] or [N, H, W, C], got ' .. nd .. ' dims') end
  x:div_(ddpm.full({}, 255)) -- a true division, as ToTensor (x * (1/255) rounds differently)
  if vr[1] == -1 and vr[2] == 1 then
    x:sub_(0.5):mul_(2) -- Normalize(0.5, 0.5): (x - 0.5) / 0.5, exactly
  elseif vr[1] ~= 0 or vr[2] ~= 1 then
    x:mul_(vr[2] - vr[1]):add_(vr[1])
  end
  return x
end

-- Nearest-neighbour resize of dims (hdim, hdim + 1) to (oh, ow) (PyTorch's 'nearest':
-- source index floor(i * in / out)).
function M.resize_nearest(t, oh, ow, hdim)
  local nd = t:dim()
  hdim = hdim or nd - 2
  local h, w = t:size(hdim), t:size(hdim + 1)
  local x = t
  if oh ~= h then x = x:index_select(hdim, (ddpm.arange(oh, { dtype = ddpm.float64 }) * (h / oh)):floor():long()) end
  if ow ~= w then x = x:index_select(hdim + 1, (ddpm.arange(ow, { dtype = ddpm.float64 }) * (w / ow)):floor():long()) end
  return x
end

-- flip(t, dim): reversed along one dim (index_select, so it has a gradient)
function M.flip(t, dim)
  local n = t:size(dim)
  return t:index_select(dim, ddpm.arange(n - 1, -1, -1))
end

-- save_image(images, path, {nrow=, padding=2, pad_value=, normalize=, value_range=, scale=,
-- labels={...}, label_scale=}) writes a PNG grid.  Images are [N, C, H, W] in [0, 1] (torchvision's
-- convention) unless value_range/normalize says otherwise, e.g. {value_range={-1, 1}} for model
-- samples.  scale enlarges each image with nearest neighbour so pixel art stays crisp (default: up
-- to 8x, about 128 px per image); labels names the rows, drawn at the left in a built-in font.
function M.save_image(tensor, path, opts)
  opts = opts or {}
  if type(path) ~= 'string' then raise('save_image: path must be a string, got ' .. type(path)) end
  local x = as_batch(tensor, 'save_image')
  local h, w = x:size(2), x:size(3)
  if opts.value_range and not opts.normalize then x = norm_(x:float(), opts.value_range[1], opts.value_range[2]) end
  local scale = opts.scale or math.max(1, math.min(8, math.floor(128 / math.max(h, w))))
  if scale ~= math.floor(scale) or scale < 1 then raise('save_image: scale must be a positive integer, got ' .. tostring(scale)) end
  if scale > 1 then x = M.resize_nearest(x, h * scale, w * scale) end
  local grid = M.make_grid(x, { nrow = opts.nrow, padding = opts.padding, pad_value = opts.pad_value,
    normalize = opts.normalize, value_range = opts.normalize and opts.value_range or nil, scale_each = opts.scale_each })
  if grid:dim() == 2 then grid = grid:unsqueeze(0) end
  local img = M.to_uint8(grid) -- [H, W, C]
  if opts.labels then
    local labels = opts.labels
    if type(labels) ~= 'table' then raise('save_image: labels must be a list of strings, one per row') end
    local padding = opts.padding or 2
    local row_h = h * scale + padding
    local fs = opts.label_scale or math.max(1, math.min(4, math.floor(row_h / 16)))
    local maxlen = 0
    for _, l in ipairs(labels) do maxlen = math.max(maxlen, #tostring(l)) end
    local lw = font.text_width(string.rep('x', maxlen), fs) + 4 * fs
    local panel = ddpm.full({ img:size(0), lw, img:size(2) }, 255, { dtype = ddpm.uint8 })
    for r, l in ipairs(labels) do
      local y = (r - 1) * row_h + padding + math.floor((h * scale - font.height * fs) / 2)
      font.draw(panel, tostring(l), 2 * fs, math.max(0, y), { scale = fs, color = 0 })
    end
    img = ddpm.cat({ panel, img }, 1)
  end
  require('ddpm.io.png').save(path, img)
  return img
end

return M
