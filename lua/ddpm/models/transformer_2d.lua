-- models/transformer_2d.lua: diffusers' Transformer2DModel for continuous inputs: GroupNorm,
-- proj_in (1x1 conv, or linear with use_linear_projection), BasicTransformerBlocks over the
-- H*W tokens, proj_out, plus the input as residual.  Returns the [B, C, H, W] sample.
local class = require 'ddpm.class'
local nn = require 'ddpm.nn'
local U = require 'ddpm.models.util'
local BasicTransformerBlock = require('ddpm.models.attention').BasicTransformerBlock
local raise = require('ddpm.ffi').raise

local M = {}

-- Transformer2DModel(num_attention_heads=16, attention_head_dim=88, {in_channels=, out_channels=,
--   num_layers=1, dropout=0, norm_num_groups=32, cross_attention_dim=, attention_bias=false,
--   activation_fn='geglu', use_linear_projection=false, only_cross_attention=false,
--   double_self_attention=false, upcast_attention=false, norm_elementwise_affine=true,
--   norm_eps=1e-5, attention_type='default'})
local Transformer2DModel = class('Transformer2DModel', nn.Module)
function Transformer2DModel:__init(num_attention_heads, attention_head_dim, opts)
  nn.Module.__init(self)
  local a = U.kw('Transformer2DModel', opts, { { 'in_channels' }, { 'out_channels' }, { 'num_layers', 1 },
    { 'dropout', 0.0 }, { 'norm_num_groups', 32 }, { 'cross_attention_dim' }, { 'attention_bias', false },
    { 'activation_fn', 'geglu' }, { 'use_linear_projection', false }, { 'only_cross_attention', false },
    { 'double_self_attention', false }, { 'upcast_attention', false }, { 'norm_type', 'layer_norm' },
    { 'norm_elementwise_affine', true }, { 'norm_eps', 1e-5 }, { 'attention_type', 'default' } })
  num_attention_heads = num_attention_heads or 16
  attention_head_dim = attention_head_dim or 88
  if a.in_channels == nil then raise('Transformer2DModel: in_channels is required (only continuous inputs are supported)') end
  self.use_linear_projection = a.use_linear_projection
  self.num_attention_heads = num_attention_heads
  self.attention_head_dim = attention_head_dim
  local inner = num_attention_heads * attention_head_dim
  self.in_channels = a.in_channels
  self.norm = nn.GroupNorm(a.norm_num_groups, a.in_channels, 1e-6, true, U.fo(a))
  if a.use_linear_projection then
    self.proj_in = nn.Linear(a.in_channels, inner, U.fo(a))
  else
    self.proj_in = nn.Conv2d(a.in_channels, inner, 1, U.fo(a, { stride = 1, padding = 0 }))
  end
  local blocks = {}
  for i = 1, a.num_layers do
    blocks[i] = BasicTransformerBlock(inner, num_attention_heads, attention_head_dim, U.fo(a, {
      dropout = a.dropout, cross_attention_dim = a.cross_attention_dim, activation_fn = a.activation_fn,
      attention_bias = a.attention_bias, only_cross_attention = a.only_cross_attention,
      double_self_attention = a.double_self_attention, upcast_attention = a.upcast_attention,
      norm_type = a.norm_type, norm_elementwise_affine = a.norm_elementwise_affine, norm_eps = a.norm_eps,
      attention_type = a.attention_type }))
  end
  self.transformer_blocks = nn.ModuleList(blocks)
  self.out_channels = a.out_channels or a.in_channels
  if a.use_linear_projection then
    self.proj_out = nn.Linear(inner, a.in_channels, U.fo(a))
  else
    self.proj_out = nn.Conv2d(inner, a.in_channels, 1, U.fo(a, { stride = 1, padding = 0 }))
  end
end

-- forward(hidden_states [B, C, H, W], encoder_hidden_states [B, L, Cx], {attention_mask=,
--   encoder_attention_mask=}) -> [B, C, H, W]
function Transformer2DModel:forward(hidden_states, encoder_hidden_states, opts)
  local B, _, H, W = unpack(hidden_states:shape())
  local residual = hidden_states
  local x = self.norm(hidden_states)
  local inner
  if not self.use_linear_projection then
    x = self.proj_in(x)
    inner = x:size(1)
    x = x:permute(0, 2, 3, 1):reshape(B, H * W, inner)
  else
    inner = x:size(1)
    x = self.proj_in(x:permute(0, 2, 3, 1):reshape(B, H * W, inner))
  end
  local blocks = self.transformer_blocks
  for i = 1, #blocks do x = blocks[i](x, encoder_hidden_states, opts) end
  if not self.use_linear_projection then
    x = self.proj_out(x:reshape(B, H, W, inner):permute(0, 3, 1, 2):contiguous())
  else
    x = self.proj_out(x):reshape(B, H, W, inner):permute(0, 3, 1, 2):contiguous()
  end
  return x + residual
end
M.Transformer2DModel = Transformer2DModel

return M
