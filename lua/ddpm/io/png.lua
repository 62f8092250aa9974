-- io/png.lua: PNG images as uint8 [H, W, C] tensors (HWC like numpy/PIL, not torchvision's CHW).
-- load(path, {mode=}) modes: 'RGB' (default: alpha composited on white, as the data sets use it),
-- 'RGBA' (alpha as stored; opaque images get 255), 'native' (grey, grey+alpha, RGB or RGBA as
-- stored).  Note PIL's convert('RGB') drops alpha instead; compositing keeps transparent sprites
-- white.  save(path, img) writes uint8 [H, W] or [H, W, 1..4] atomically.
local F = require 'ddpm.ffi'
local T = require 'ddpm.tensor'
local C = F.C
local raise = F.raise

local M = {}
local modes = { rgb = 3, rgba = 4, native = 0 }

function M.load(path, opts)
  if type(path) ~= 'string' then raise('load_png: path must be a string, got ' .. type(path)) end
  local mode = opts and opts.mode or 'RGB'
  local ch = type(mode) == 'string' and modes[mode:lower()]
  if not ch then raise("load_png: mode must be 'RGB', 'RGBA' or 'native', got " .. tostring(mode)) end
  return T.call2(C.ddpm_png_load, path, ch)
end

function M.save(path, img)
  if T.is_tensor(path) and type(img) == 'string' then path, img = img, path end
  if type(path) ~= 'string' then raise('save_png: path must be a string, got ' .. type(path)) end
  T.need_tensor(img, 'image', 'save_png')
  T.check(C.ddpm_png_save(path, img))
end

-- composite_box(img [H,W,3|4] uint8, k) -> [H/k, W/k, 3]: on white, k x k box average
function M.composite_box(img, k)
  T.need_tensor(img, 'image', 'composite_box')
  return T.call2(C.ddpm_image_composite_box, img, k or 1)
end

return M
