-- utils/init.lua: ddpm.utils, helpers around the library (≈ torchvision.utils): image grids,
-- save_image, uint8 conversions, the bitmap font.
local image = require 'ddpm.utils.image'

local M = {
  make_grid = image.make_grid,
  save_image = image.save_image,
  to_uint8 = image.to_uint8,
  from_uint8 = image.from_uint8,
  resize_nearest = image.resize_nearest,
  flip = image.flip,
  image = image,
}
-- loaded on first use: keeps `require 'ddpm.utils'` cheap
local lazy = { font = 'ddpm.utils.font', progress = 'ddpm.utils.progress', profile = 'ddpm.utils.profile' }
setmetatable(M, { __index = function(t, k)
  local mod = lazy[k]
  if mod then
    local v = require(mod)
    rawset(t, k, v)
    return v
  end
end })
return M
