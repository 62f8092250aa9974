-- models/sampling.lua: diffusers' Downsample2D (stride-2 conv or 2x2 average pool) and
-- Upsample2D (nearest 2x, then an optional 3x3 conv).
local class = require 'ddpm.class'
local nn = require 'ddpm.nn'
local F = require 'ddpm.nn.functional'
local U = require 'ddpm.models.util'
local raise = require('ddpm.ffi').raise

local M = {}

-- Downsample2D(channels, {use_conv=false, out_channels=, padding=1, name='conv', kernel_size=3,
--   bias=true}).  (diffusers also registers the conv as Conv2d_0 when name == 'conv'; the
--   UNet blocks use name 'op', the only naming kept here.)
local Downsample2D = class('Downsample2D', nn.Module)
function Downsample2D:__init(channels, opts)
  nn.Module.__init(self)
  local a = U.kw('Downsample2D', opts, { { 'use_conv', false }, { 'out_channels' }, { 'padding', 1 }, { 'name', 'conv' },
    { 'kernel_size', 3 }, { 'norm_type' }, { 'eps' }, { 'elementwise_affine' }, { 'bias', true } })
  if a.norm_type ~= nil then raise('Downsample2D: norm_type is not supported') end
  self.channels = channels
  self.out_channels = a.out_channels or channels
  self.use_conv = a.use_conv
  self.padding = a.padding
  self.name = a.name
  if a.use_conv then
    self.conv = nn.Conv2d(channels, self.out_channels, a.kernel_size,
      U.fo(a, { stride = 2, padding = a.padding, bias = a.bias }))
  else
    if channels ~= self.out_channels then raise('Downsample2D: without a conv, out_channels must equal channels') end
  end
end
function Downsample2D:forward(x)
  if x:size(1) ~= self.channels then
    raise(string.format('Downsample2D: expected %d channels, got %d', self.channels, x:size(1)))
  end
  if not self.use_conv then
    local B, C, H, W = unpack(x:shape())
    local h, w = math.floor(H / 2), math.floor(W / 2)
    return x:narrow(2, 0, 2 * h):narrow(3, 0, 2 * w):reshape(B, C, h, 2, w, 2):mean({ 3, 5 })
  end
  if self.padding == 0 then x = F.pad(x, { 0, 1, 0, 1 }, 'constant', 0) end
  return self.conv(x)
end
M.Downsample2D = Downsample2D

-- Upsample2D(channels, {use_conv=false, out_channels=, name='conv', kernel_size=3, padding=1,
--   bias=true, interpolate=true})
local Upsample2D = class('Upsample2D', nn.Module)
function Upsample2D:__init(channels, opts)
  nn.Module.__init(self)
  local a = U.kw('Upsample2D', opts, { { 'use_conv', false }, { 'use_conv_transpose', false }, { 'out_channels' },
    { 'name', 'conv' }, { 'kernel_size' }, { 'padding', 1 }, { 'norm_type' }, { 'eps' }, { 'elementwise_affine' },
    { 'bias', true }, { 'interpolate', true } })
  if a.use_conv_transpose then raise('Upsample2D: use_conv_transpose is not supported') end
  if a.norm_type ~= nil then raise('Upsample2D: norm_type is not supported') end
  self.channels = channels
  self.out_channels = a.out_channels or channels
  self.use_conv = a.use_conv
  self.interpolate = a.interpolate
  self.name = a.name
  if a.use_conv then
    local conv = nn.Conv2d(channels, self.out_channels, a.kernel_size or 3, U.fo(a, { padding = a.padding, bias = a.bias }))
    if a.name == 'conv' then self.conv = conv else self.Conv2d_0 = conv end
  end
end
-- forward(x, output_size={h, w} or nil)
function Upsample2D:forward(x, output_size)
  if x:size(1) ~= self.channels then
    raise(string.format('Upsample2D: expected %d channels, got %d', self.channels, x:size(1)))
  end
  if self.interpolate then
    if output_size == nil then
      x = F.interpolate(x, { scale_factor = 2.0, mode = 'nearest' })
    else
      x = F.interpolate(x, { size = output_size, mode = 'nearest' })
    end
  end
  if self.use_conv then x = (self.conv or self.Conv2d_0)(x) end
  return x
end
M.Upsample2D = Upsample2D

return M
