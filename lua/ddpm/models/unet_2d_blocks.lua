-- models/unet_2d_blocks.lua: the UNet stages of diffusers (DownBlock2D, CrossAttnDownBlock2D,
-- AttnDownBlock2D, UNetMidBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D, CrossAttnUpBlock2D,
-- AttnUpBlock2D) and the get_down_block / get_mid_block / get_up_block factories.
-- Down blocks return hidden_states, {skip states...}; up blocks pop their skips from the end.
local ddpm = require 'ddpm'
local class = require 'ddpm.class'
local nn = require 'ddpm.nn'
local U = require 'ddpm.models.util'
local ResnetBlock2D = require('ddpm.models.resnet').ResnetBlock2D
local S = require 'ddpm.models.sampling'
local Transformer2DModel = require('ddpm.models.transformer_2d').Transformer2DModel
local Attention = require('ddpm.models.attention_processor').Attention
local raise = require('ddpm.ffi').raise

local M = {}

local function resnet(a, cin, cout)
  return ResnetBlock2D(cin, U.fo(a, { out_channels = cout, temb_channels = a.temb_channels, eps = a.resnet_eps,
    groups = a.resnet_groups, dropout = a.dropout, time_embedding_norm = a.resnet_time_scale_shift,
    non_linearity = a.resnet_act_fn, output_scale_factor = a.output_scale_factor, pre_norm = a.resnet_pre_norm }))
end
local function transformer(a, heads, channels, layers)
  return Transformer2DModel(heads, math.floor(channels / heads), U.fo(a, { in_channels = channels,
    num_layers = layers, cross_attention_dim = a.cross_attention_dim, norm_num_groups = a.resnet_groups,
    use_linear_projection = a.use_linear_projection, only_cross_attention = a.only_cross_attention,
    upcast_attention = a.upcast_attention, attention_type = a.attention_type }))
end
local function self_attention(a, channels, groups)
  local hd = a.attention_head_dim or channels
  return Attention(channels, U.fo(a, { heads = math.floor(channels / hd), dim_head = hd,
    rescale_output_factor = a.output_scale_factor, eps = a.resnet_eps, norm_num_groups = groups,
    residual_connection = true, bias = true, upcast_softmax = true }))
end
local function per_layer(v, n)
  if type(v) == 'table' then return v end
  local t = {}
  for i = 1, n do t[i] = v end
  return t
end
local function downsampler(a, cout)
  return nn.ModuleList({ S.Downsample2D(cout, U.fo(a, { use_conv = true, out_channels = cout,
    padding = a.downsample_padding, name = 'op' })) })
end
local function upsampler(a, cout)
  return nn.ModuleList({ S.Upsample2D(cout, U.fo(a, { use_conv = true, out_channels = cout })) })
end

local resnet_spec = { { 'in_channels' }, { 'out_channels' }, { 'temb_channels' }, { 'dropout', 0.0 },
  { 'num_layers', 1 }, { 'resnet_eps', 1e-6 }, { 'resnet_time_scale_shift', 'default' },
  { 'resnet_act_fn', 'swish' }, { 'resnet_groups', 32 }, { 'resnet_pre_norm', true }, { 'output_scale_factor', 1.0 } }
local function spec(extra)
  local s = {}
  for _, e in ipairs(resnet_spec) do s[#s + 1] = e end
  for _, e in ipairs(extra) do s[#s + 1] = e end
  return s
end
local xattn_spec = { { 'transformer_layers_per_block', 1 }, { 'num_attention_heads', 1 }, { 'cross_attention_dim', 1280 },
  { 'dual_cross_attention', false }, { 'use_linear_projection', false }, { 'only_cross_attention', false },
  { 'upcast_attention', false }, { 'attention_type', 'default' } }
local function with(list, extra)
  local s = {}
  for _, e in ipairs(list) do s[#s + 1] = e end
  for _, e in ipairs(extra) do s[#s + 1] = e end
  return s
end

-- ---- down blocks -------------------------------------------------------------------------------------
-- DownBlock2D({in_channels, out_channels, temb_channels, dropout=0, num_layers=1, resnet_eps=1e-6,
--   resnet_time_scale_shift='default', resnet_act_fn='swish', resnet_groups=32,
--   output_scale_factor=1, add_downsample=true, downsample_padding=1})
local DownBlock2D = class('DownBlock2D', nn.Module)
function DownBlock2D:__init(opts)
  nn.Module.__init(self)
  local a = U.kw('DownBlock2D', opts, spec({ { 'add_downsample', true }, { 'downsample_padding', 1 } }))
  local resnets = {}
  for i = 1, a.num_layers do resnets[i] = resnet(a, i == 1 and a.in_channels or a.out_channels, a.out_channels) end
  self.resnets = nn.ModuleList(resnets)
  if a.add_downsample then self.downsamplers = downsampler(a, a.out_channels) end
end
function DownBlock2D:forward(hidden_states, temb)
  local out = {}
  local resnets = self.resnets
  for i = 1, #resnets do
    hidden_states = resnets[i](hidden_states, temb)
    out[#out + 1] = hidden_states
  end
  if self.downsamplers then
    for _, d in ipairs(self.downsamplers) do hidden_states = d(hidden_states) end
    out[#out + 1] = hidden_states
  end
  return hidden_states, out
end
M.DownBlock2D = DownBlock2D

-- CrossAttnDownBlock2D(DownBlock2D's options + transformer_layers_per_block=1,
--   num_attention_heads=1, cross_attention_dim=1280, use_linear_projection=false,
--   only_cross_attention=false, upcast_attention=false)
local CrossAttnDownBlock2D = class('CrossAttnDownBlock2D', nn.Module)
function CrossAttnDownBlock2D:__init(opts)
  nn.Module.__init(self)
  local a = U.kw('CrossAttnDownBlock2D', opts, spec(with(xattn_spec,
    { { 'downsample_padding', 1 }, { 'add_downsample', true } })))
  if a.dual_cross_attention then raise('CrossAttnDownBlock2D: dual_cross_attention is not supported') end
  self.has_cross_attention = true
  self.num_attention_heads = a.num_attention_heads
  local tl = per_layer(a.transformer_layers_per_block, a.num_layers)
  local resnets, attentions = {}, {}
  for i = 1, a.num_layers do
    resnets[i] = resnet(a, i == 1 and a.in_channels or a.out_channels, a.out_channels)
    attentions[i] = transformer(a, a.num_attention_heads, a.out_channels, tl[i])
  end
  self.attentions = nn.ModuleList(attentions)
  self.resnets = nn.ModuleList(resnets)
  if a.add_downsample then self.downsamplers = downsampler(a, a.out_channels) end
end
-- forward(hidden_states, temb, encoder_hidden_states, {attention_mask=, encoder_attention_mask=})
function CrossAttnDownBlock2D:forward(hidden_states, temb, encoder_hidden_states, opts)
  local out = {}
  local resnets, attentions = self.resnets, self.attentions
  for i = 1, #resnets do
    hidden_states = resnets[i](hidden_states, temb)
    hidden_states = attentions[i](hidden_states, encoder_hidden_states, opts)
    out[#out + 1] = hidden_states
  end
  if self.downsamplers then
    for _, d in ipairs(self.downsamplers) do hidden_states = d(hidden_states) end
    out[#out + 1] = hidden_states
  end
  return hidden_states, out
end
M.CrossAttnDownBlock2D = CrossAttnDownBlock2D

-- AttnDownBlock2D(DownBlock2D's options + attention_head_dim=1, downsample_type='conv')
local AttnDownBlock2D = class('AttnDownBlock2D', nn.Module)
function AttnDownBlock2D:__init(opts)
  nn.Module.__init(self)
  local a = U.kw('AttnDownBlock2D', opts, spec({ { 'attention_head_dim', 1 }, { 'downsample_padding', 1 },
    { 'downsample_type', 'conv' } }))
  self.downsample_type = a.downsample_type
  local resnets, attentions = {}, {}
  for i = 1, a.num_layers do
    resnets[i] = resnet(a, i == 1 and a.in_channels or a.out_channels, a.out_channels)
    attentions[i] = self_attention(a, a.out_channels, a.resnet_groups)
  end
  self.attentions = nn.ModuleList(attentions)
  self.resnets = nn.ModuleList(resnets)
  if a.downsample_type == 'conv' then
    self.downsamplers = downsampler(a, a.out_channels)
  elseif a.downsample_type == 'resnet' then
    self.downsamplers = nn.ModuleList({ ResnetBlock2D(a.out_channels, U.fo(a, { out_channels = a.out_channels,
      temb_channels = a.temb_channels, eps = a.resnet_eps, groups = a.resnet_groups, dropout = a.dropout,
      time_embedding_norm = a.resnet_time_scale_shift, non_linearity = a.resnet_act_fn,
      output_scale_factor = a.output_scale_factor, down = true })) })
  elseif a.downsample_type then
    raise("AttnDownBlock2D: unknown downsample_type '" .. tostring(a.downsample_type) .. "' (valid: 'conv', 'resnet')")
  end
end
function AttnDownBlock2D:forward(hidden_states, temb)
  local out = {}
  local resnets, attentions = self.resnets, self.attentions
  for i = 1, #resnets do
    hidden_states = attentions[i](resnets[i](hidden_states, temb))
    out[#out + 1] = hidden_states
  end
  if self.downsamplers then
    for _, d in ipairs(self.downsamplers) do
      if self.downsample_type == 'resnet' then hidden_states = d(hidden_states, temb) else hidden_states = d(hidden_states) end
    end
    out[#out + 1] = hidden_states
  end
  return hidden_states, out
end
M.AttnDownBlock2D = AttnDownBlock2D

-- ---- mid blocks -----------------------------------------------------------------------------------------
-- UNetMidBlock2D({in_channels, temb_channels, dropout=0, num_layers=1, resnet_eps=1e-6,
--   resnet_time_scale_shift='default', resnet_act_fn='swish', resnet_groups=32, attn_groups=,
--   add_attention=true, attention_head_dim=1, output_scale_factor=1})
local UNetMidBlock2D = class('UNetMidBlock2D', nn.Module)
function UNetMidBlock2D:__init(opts)
  nn.Module.__init(self)
  local a = U.kw('UNetMidBlock2D', opts, { { 'in_channels' }, { 'temb_channels' }, { 'dropout', 0.0 },
    { 'num_layers', 1 }, { 'resnet_eps', 1e-6 }, { 'resnet_time_scale_shift', 'default' }, { 'resnet_act_fn', 'swish' },
    { 'resnet_groups', 32 }, { 'attn_groups' }, { 'resnet_pre_norm', true }, { 'add_attention', true },
    { 'attention_head_dim', 1 }, { 'output_scale_factor', 1.0 } })
  if a.resnet_groups == nil then a.resnet_groups = math.min(math.floor(a.in_channels / 4), 32) end
  self.add_attention = a.add_attention
  local attn_groups = a.attn_groups
  if attn_groups == nil and a.resnet_time_scale_shift == 'default' then attn_groups = a.resnet_groups end
  local c = a.in_channels
  local resnets, attentions = { resnet(a, c, c) }, {}
  for i = 1, a.num_layers do
    if a.add_attention then attentions[i] = self_attention(a, c, attn_groups) end
    resnets[#resnets + 1] = resnet(a, c, c)
  end
  self.attentions = nn.ModuleList(attentions)
  self.resnets = nn.ModuleList(resnets)
end
function UNetMidBlock2D:forward(hidden_states, temb)
  local resnets, attentions = self.resnets, self.attentions
  hidden_states = resnets[1](hidden_states, temb)
  for i = 2, #resnets do
    local at = attentions[i - 1]
    if at then hidden_states = at(hidden_states) end
    hidden_states = resnets[i](hidden_states, temb)
  end
  return hidden_states
end
M.UNetMidBlock2D = UNetMidBlock2D

-- UNetMidBlock2DCrossAttn({in_channels, temb_channels, dropout=0, num_layers=1,
--   transformer_layers_per_block=1, resnet_eps=1e-6, resnet_time_scale_shift='default',
--   resnet_act_fn='swish', resnet_groups=32, num_attention_heads=1, output_scale_factor=1,
--   cross_attention_dim=1280, use_linear_projection=false, upcast_attention=false})
local UNetMidBlock2DCrossAttn = class('UNetMidBlock2DCrossAttn', nn.Module)
function UNetMidBlock2DCrossAttn:__init(opts)
  nn.Module.__init(self)
  local a = U.kw('UNetMidBlock2DCrossAttn', opts, { { 'in_channels' }, { 'temb_channels' }, { 'dropout', 0.0 },
    { 'num_layers', 1 }, { 'transformer_layers_per_block', 1 }, { 'resnet_eps', 1e-6 },
    { 'resnet_time_scale_shift', 'default' }, { 'resnet_act_fn', 'swish' }, { 'resnet_groups', 32 },
    { 'resnet_pre_norm', true }, { 'num_attention_heads', 1 }, { 'output_scale_factor', 1.0 },
    { 'cross_attention_dim', 1280 }, { 'dual_cross_attention', false }, { 'use_linear_projection', false },
    { 'upcast_attention', false }, { 'attention_type', 'default' } })
  if a.dual_cross_attention then raise('UNetMidBlock2DCrossAttn: dual_cross_attention is not supported') end
  self.has_cross_attention = true
  self.num_attention_heads = a.num_attention_heads
  if a.resnet_groups == nil then a.resnet_groups = math.min(math.floor(a.in_channels / 4), 32) end
  local tl = per_layer(a.transformer_layers_per_block, a.num_layers)
  local c = a.in_channels
  local resnets, attentions = { resnet(a, c, c) }, {}
  for i = 1, a.num_layers do
    attentions[i] = transformer(a, a.num_attention_heads, c, tl[i])
    resnets[#resnets + 1] = resnet(a, c, c)
  end
  self.attentions = nn.ModuleList(attentions)
  self.resnets = nn.ModuleList(resnets)
end
function UNetMidBlock2DCrossAttn:forward(hidden_states, temb, encoder_hidden_states, opts)
  local resnets, attentions = self.resnets, self.attentions
  hidden_states = resnets[1](hidden_states, temb)
  for i = 2, #resnets do
    hidden_states = attentions[i - 1](hidden_states, encoder_hidden_states, opts)
    hidden_states = resnets[i](hidden_states, temb)
  end
  return hidden_states
end
M.UNetMidBlock2DCrossAttn = UNetMidBlock2DCrossAttn

-- ---- up blocks ----------------------------------------------------------------------------------------------
local function up_resnets(a)
  local resnets = {}
  for i = 1, a.num_layers do
    local skip = (i == a.num_layers) and a.in_channels or a.out_channels
    local rin = (i == 1) and a.prev_output_channel or a.out_channels
    resnets[i] = resnet(a, rin + skip, a.out_channels)
  end
  return resnets
end

-- UpBlock2D({in_channels, prev_output_channel, out_channels, temb_channels, resolution_idx=,
--   dropout=0, num_layers=1, resnet_eps=1e-6, resnet_time_scale_shift='default',
--   resnet_act_fn='swish', resnet_groups=32, output_scale_factor=1, add_upsample=true})
local UpBlock2D = class('UpBlock2D', nn.Module)
function UpBlock2D:__init(opts)
  nn.Module.__init(self)
  local a = U.kw('UpBlock2D', opts, spec({ { 'prev_output_channel' }, { 'resolution_idx' }, { 'add_upsample', true } }))
  self.resnets = nn.ModuleList(up_resnets(a))
  if a.add_upsample then self.upsamplers = upsampler(a, a.out_channels) end
  self.resolution_idx = a.resolution_idx
end
-- forward(hidden_states, res_hidden_states {..., last}, temb, upsample_size)
function UpBlock2D:forward(hidden_states, res_hidden_states, temb, upsample_size)
  local resnets = self.resnets
  local nres = #res_hidden_states
  for i = 1, #resnets do
    hidden_states = ddpm.cat({ hidden_states, res_hidden_states[nres - i + 1] }, 1)
    hidden_states = resnets[i](hidden_states, temb)
  end
  if self.upsamplers then
    for _, u in ipairs(self.upsamplers) do hidden_states = u(hidden_states, upsample_size) end
  end
  return hidden_states
end
M.UpBlock2D = UpBlock2D

-- CrossAttnUpBlock2D(UpBlock2D's options + the cross-attention options of CrossAttnDownBlock2D)
local CrossAttnUpBlock2D = class('CrossAttnUpBlock2D', nn.Module)
function CrossAttnUpBlock2D:__init(opts)
  nn.Module.__init(self)
  local a = U.kw('CrossAttnUpBlock2D', opts, spec(with(xattn_spec,
    { { 'prev_output_channel' }, { 'resolution_idx' }, { 'add_upsample', true } })))
  if a.dual_cross_attention then raise('CrossAttnUpBlock2D: dual_cross_attention is not supported') end
  self.has_cross_attention = true
  self.num_attention_heads = a.num_attention_heads
  local tl = per_layer(a.transformer_layers_per_block, a.num_layers)
  local resnets = up_resnets(a)
  local attentions = {}
  for i = 1, a.num_layers do attentions[i] = transformer(a, a.num_attention_heads, a.out_channels, tl[i]) end
  self.attentions = nn.ModuleList(attentions)
  self.resnets = nn.ModuleList(resnets)
  if a.add_upsample then self.upsamplers = upsampler(a, a.out_channels) end
  self.resolution_idx = a.resolution_idx
end
-- forward(hidden_states, res_hidden_states, temb, encoder_hidden_states, upsample_size,
--   {attention_mask=, encoder_attention_mask=})
function CrossAttnUpBlock2D:forward(hidden_states, res_hidden_states, temb, encoder_hidden_states, upsample_size, opts)
  local resnets, attentions = self.resnets, self.attentions
  local nres = #res_hidden_states
  for i = 1, #resnets do
    hidden_states = ddpm.cat({ hidden_states, res_hidden_states[nres - i + 1] }, 1)
    hidden_states = resnets[i](hidden_states, temb)
    hidden_states = attentions[i](hidden_states, encoder_hidden_states, opts)
  end
  if self.upsamplers then
    for _, u in ipairs(self.upsamplers) do hidden_states = u(hidden_states, upsample_size) end
  end
  return hidden_states
end
M.CrossAttnUpBlock2D = CrossAttnUpBlock2D

-- AttnUpBlock2D(UpBlock2D's options + attention_head_dim=1, upsample_type='conv')
local AttnUpBlock2D = class('AttnUpBlock2D', nn.Module)
function AttnUpBlock2D:__init(opts)
  nn.Module.__init(self)
  local a = U.kw('AttnUpBlock2D', opts, spec({ { 'prev_output_channel' }, { 'resolution_idx' },
    { 'attention_head_dim', 1 }, { 'upsample_type', 'conv' } }))
  self.upsample_type = a.upsample_type
  local resnets = up_resnets(a)
  local attentions = {}
  for i = 1, a.num_layers do attentions[i] = self_attention(a, a.out_channels, a.resnet_groups) end
  self.attentions = nn.ModuleList(attentions)
  self.resnets = nn.ModuleList(resnets)
  if a.upsample_type == 'conv' then
    self.upsamplers = upsampler(a, a.out_channels)
  elseif a.upsample_type == 'resnet' then
    self.upsamplers = nn.ModuleList({ ResnetBlock2D(a.out_channels, U.fo(a, { out_channels = a.out_channels,
      temb_channels = a.temb_channels, eps = a.resnet_eps, groups = a.resnet_groups, dropout = a.dropout,
      time_embedding_norm = a.resnet_time_scale_shift, non_linearity = a.resnet_act_fn,
      output_scale_factor = a.output_scale_factor, up = true })) })
  elseif a.upsample_type then
    raise("AttnUpBlock2D: unknown upsample_type '" .. tostring(a.upsample_type) .. "' (valid: 'conv', 'resnet')")
  end
  self.resolution_idx = a.resolution_idx
end
function AttnUpBlock2D:forward(hidden_states, res_hidden_states, temb, upsample_size)
  local resnets, attentions = self.resnets, self.attentions
  local nres = #res_hidden_states
  for i = 1, #resnets do
    hidden_states = ddpm.cat({ hidden_states, res_hidden_states[nres - i + 1] }, 1)
    hidden_states = attentions[i](resnets[i](hidden_states, temb))
  end
  if self.upsamplers then
    for _, u in ipairs(self.upsamplers) do
      if self.upsample_type == 'resnet' then hidden_states = u(hidden_states, temb) else hidden_states = u(hidden_states) end
    end
  end
  return hidden_states
end
M.AttnUpBlock2D = AttnUpBlock2D

-- ---- factories (diffusers' get_down_block / get_mid_block / get_up_block) ------------------------------------
M.down_block_types = { 'DownBlock2D', 'CrossAttnDownBlock2D', 'AttnDownBlock2D' }
M.up_block_types = { 'UpBlock2D', 'CrossAttnUpBlock2D', 'AttnUpBlock2D' }
M.mid_block_types = { 'UNetMidBlock2DCrossAttn', 'UNetMidBlock2D' }

local function unknown(kind, name, valid)
  raise(string.format("unknown %s '%s' (valid: %s)", kind, tostring(name), table.concat(valid, ', ')))
end

-- the keyword arguments get_down_block / get_up_block pass on to the cross-attention blocks
local CROSS_ATTN_KEYS = { 'transformer_layers_per_block', 'cross_attention_dim', 'num_attention_heads',
  'dual_cross_attention', 'use_linear_projection', 'only_cross_attention', 'upcast_attention', 'attention_type' }

-- get_down_block(type, a): a holds diffusers' get_down_block keyword arguments
function M.get_down_block(t, a)
  if type(t) == 'string' and t:sub(1, 7) == 'UNetRes' then t = t:sub(8) end
  local hd = a.attention_head_dim or a.num_attention_heads
  local base = U.fo(a, { num_layers = a.num_layers, in_channels = a.in_channels, out_channels = a.out_channels,
    temb_channels = a.temb_channels, dropout = a.dropout, resnet_eps = a.resnet_eps, resnet_act_fn = a.resnet_act_fn,
    resnet_groups = a.resnet_groups, downsample_padding = a.downsample_padding,
    resnet_time_scale_shift = a.resnet_time_scale_shift })
  if t == 'DownBlock2D' then
    base.add_downsample = a.add_downsample
    return DownBlock2D(base)
  elseif t == 'AttnDownBlock2D' then
    base.attention_head_dim = hd
    -- false: no downsampler (nil would fall back to the default 'conv')
    if a.add_downsample == false then base.downsample_type = false else base.downsample_type = a.downsample_type or 'conv' end
    return AttnDownBlock2D(base)
  elseif t == 'CrossAttnDownBlock2D' then
    if a.cross_attention_dim == nil then raise('cross_attention_dim must be specified for CrossAttnDownBlock2D') end
    base.add_downsample = a.add_downsample
    for _, k in ipairs(CROSS_ATTN_KEYS) do base[k] = a[k] end
    return CrossAttnDownBlock2D(base)
  end
  unknown('down block type', t, M.down_block_types)
end

function M.get_mid_block(t, a)
  if t == nil then return nil end
  if t == 'UNetMidBlock2DCrossAttn' then
    return UNetMidBlock2DCrossAttn(U.fo(a, { transformer_layers_per_block = a.transformer_layers_per_block,
      in_channels = a.in_channels, temb_channels = a.temb_channels, dropout = a.dropout, resnet_eps = a.resnet_eps,
      resnet_act_fn = a.resnet_act_fn, output_scale_factor = a.output_scale_factor,
      resnet_time_scale_shift = a.resnet_time_scale_shift, cross_attention_dim = a.cross_attention_dim,
      num_attention_heads = a.num_attention_heads, resnet_groups = a.resnet_groups,
      dual_cross_attention = a.dual_cross_attention, use_linear_projection = a.use_linear_projection,
      upcast_attention = a.upcast_attention, attention_type = a.attention_type }))
  elseif t == 'UNetMidBlock2D' then
    return UNetMidBlock2D(U.fo(a, { in_channels = a.in_channels, temb_channels = a.temb_channels, dropout = a.dropout,
      num_layers = 0, resnet_eps = a.resnet_eps, resnet_act_fn = a.resnet_act_fn,
      output_scale_factor = a.output_scale_factor, resnet_groups = a.resnet_groups,
      resnet_time_scale_shift = a.resnet_time_scale_shift, add_attention = false }))
  end
  unknown('mid block type', t, M.mid_block_types)
end

function M.get_up_block(t, a)
  if type(t) == 'string' and t:sub(1, 7) == 'UNetRes' then t = t:sub(8) end
  local hd = a.attention_head_dim or a.num_attention_heads
  local base = U.fo(a, { num_layers = a.num_layers, in_channels = a.in_channels, out_channels = a.out_channels,
    prev_output_channel = a.prev_output_channel, temb_channels = a.temb_channels, resolution_idx = a.resolution_idx,
    dropout = a.dropout, resnet_eps = a.resnet_eps, resnet_act_fn = a.resnet_act_fn, resnet_groups = a.resnet_groups,
    resnet_time_scale_shift = a.resnet_time_scale_shift })
  if t == 'UpBlock2D' then
    base.add_upsample = a.add_upsample
    return UpBlock2D(base)
  elseif t == 'AttnUpBlock2D' then
    base.attention_head_dim = hd
    if a.add_upsample == false then base.upsample_type = false else base.upsample_type = a.upsample_type or 'conv' end
    return AttnUpBlock2D(base)
  elseif t == 'CrossAttnUpBlock2D' then
    if a.cross_attention_dim == nil then raise('cross_attention_dim must be specified for CrossAttnUpBlock2D') end
    base.add_upsample = a.add_upsample
    for _, k in ipairs(CROSS_ATTN_KEYS) do base[k] = a[k] end
    return CrossAttnUpBlock2D(base)
  end
  unknown('up block type', t, M.up_block_types)
end

return M
