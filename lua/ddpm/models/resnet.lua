-- models/resnet.lua: diffusers' ResnetBlock2D: norm1-act-conv1, + projected time embedding
-- (added, or scale/shift after norm2), norm2-act-dropout-conv2, plus the (1x1-projected) input.
local class = require 'ddpm.class'
local nn = require 'ddpm.nn'
local U = require 'ddpm.models.util'
local S = require 'ddpm.models.sampling'
local raise = require('ddpm.ffi').raise

local M = {}

-- ResnetBlock2D(in_channels, {out_channels=, conv_shortcut=false, dropout=0, temb_channels=512,
--   groups=32, groups_out=, pre_norm=true, eps=1e-6, non_linearity='swish', skip_time_act=false,
--   time_embedding_norm='default' | 'scale_shift', output_scale_factor=1, use_in_shortcut=,
--   up=false, down=false, conv_shortcut_bias=true, conv_2d_out_channels=})
local ResnetBlock2D = class('ResnetBlock2D', nn.Module)
function ResnetBlock2D:__init(in_channels, opts)
  nn.Module.__init(self)
  local a = U.kw('ResnetBlock2D', opts, { { 'out_channels' }, { 'conv_shortcut', false }, { 'dropout', 0.0 },
    { 'temb_channels', 512 }, { 'groups', 32 }, { 'groups_out' }, { 'pre_norm', true }, { 'eps', 1e-6 },
    { 'non_linearity', 'swish' }, { 'skip_time_act', false }, { 'time_embedding_norm', 'default' }, { 'kernel' },
    { 'output_scale_factor', 1.0 }, { 'use_in_shortcut' }, { 'up', false }, { 'down', false },
    { 'conv_shortcut_bias', true }, { 'conv_2d_out_channels' } })
  local ten = a.time_embedding_norm
  if ten ~= 'default' and ten ~= 'scale_shift' then
    raise("ResnetBlock2D: unknown time_embedding_norm '" .. tostring(ten) .. "' (valid: 'default', 'scale_shift')")
  end
  if a.kernel ~= nil then raise('ResnetBlock2D: FIR/sde_vp resampling kernels are not supported') end
  local out = a.out_channels or in_channels
  self.in_channels = in_channels
  self.out_channels = out
  self.up, self.down = a.up, a.down
  self.output_scale_factor = a.output_scale_factor
  self.time_embedding_norm = ten
  self.skip_time_act = a.skip_time_act
  self.norm1 = nn.GroupNorm(a.groups, in_channels, a.eps, true, U.fo(a))
  self.conv1 = nn.Conv2d(in_channels, out, 3, U.fo(a, { stride = 1, padding = 1 }))
  if a.temb_channels ~= nil then
    self.time_emb_proj = nn.Linear(a.temb_channels, ten == 'scale_shift' and 2 * out or out, U.fo(a))
  end
  self.norm2 = nn.GroupNorm(a.groups_out or a.groups, out, a.eps, true, U.fo(a))
  self.dropout = nn.Dropout(a.dropout)
  local c2out = a.conv_2d_out_channels or out
  self.conv2 = nn.Conv2d(out, c2out, 3, U.fo(a, { stride = 1, padding = 1 }))
  self.nonlinearity = U.get_activation(a.non_linearity)
  if a.up then
    self.upsample = S.Upsample2D(in_channels, { use_conv = false })
  elseif a.down then
    self.downsample = S.Downsample2D(in_channels, { use_conv = false, padding = 1, name = 'op' })
  end
  local use_in = a.use_in_shortcut
  if use_in == nil then use_in = in_channels ~= c2out end
  self.use_in_shortcut = use_in
  if use_in then
    self.conv_shortcut = nn.Conv2d(in_channels, c2out, 1, U.fo(a, { stride = 1, padding = 0, bias = a.conv_shortcut_bias }))
  end
end

function ResnetBlock2D:forward(input_tensor, temb)
  local act = self.nonlinearity
  local h = U.norm_act(self.norm1, act, input_tensor)
  local r = self.upsample or self.downsample
  if r then
    input_tensor = r(input_tensor)
    h = r(h)
  end
  h = self.conv1(h)
  if self.time_emb_proj and temb ~= nil then
    if not self.skip_time_act then temb = act(temb) end
    temb = self.time_emb_proj(temb):unsqueeze(2):unsqueeze(3)
  end
  if self.time_embedding_norm == 'default' then
    if temb ~= nil then h = h + temb end
    h = U.norm_act(self.norm2, act, h)
  else
    if temb == nil then raise("ResnetBlock2D: temb should not be nil when time_embedding_norm is 'scale_shift'") end
    local ss = temb:chunk(2, 1)
    h = act(self.norm2(h) * (ss[1] + 1) + ss[2])
  end
  h = self.dropout(h)
  h = self.conv2(h)
  if self.conv_shortcut then input_tensor = self.conv_shortcut(input_tensor) end
  local out = input_tensor + h
  if self.output_scale_factor ~= 1 then out = out / self.output_scale_factor end
  return out
end
M.ResnetBlock2D = ResnetBlock2D

return M
