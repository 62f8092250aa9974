-- models/attention_processor.lua: diffusers' Attention (to_q, to_k, to_v, to_out.0) for self-
-- and cross-attention, with the optional group norm, residual and output rescale used by the
-- UNet2DModel attention blocks.  Heads are split by views and the product runs in
-- F.scaled_dot_product_attention (one key token, as with the label embedding, costs ~nothing).
local class = require 'ddpm.class'
local nn = require 'ddpm.nn'
local F = require 'ddpm.nn.functional'
local U = require 'ddpm.models.util'
local raise = require('ddpm.ffi').raise

local M = {}

-- Attention(query_dim, {cross_attention_dim=, heads=8, dim_head=64, dropout=0, bias=false,
--   upcast_attention=false, upcast_softmax=false, cross_attention_norm=, norm_num_groups=,
--   out_bias=true, scale_qk=true, only_cross_attention=false, eps=1e-5,
--   rescale_output_factor=1, residual_connection=false, out_dim=})
local Attention = class('Attention', nn.Module)
function Attention:__init(query_dim, opts)
  nn.Module.__init(self)
  local a = U.kw('Attention', opts, { { 'cross_attention_dim' }, { 'heads', 8 }, { 'dim_head', 64 }, { 'dropout', 0.0 },
    { 'bias', false }, { 'upcast_attention', false }, { 'upcast_softmax', false }, { 'cross_attention_norm' },
    { 'cross_attention_norm_num_groups', 32 }, { 'added_kv_proj_dim' }, { 'norm_num_groups' }, { 'spatial_norm_dim' },
    { 'out_bias', true }, { 'scale_qk', true }, { 'only_cross_attention', false }, { 'eps', 1e-5 },
    { 'rescale_output_factor', 1.0 }, { 'residual_connection', false }, { 'out_dim' } })
  if a.added_kv_proj_dim ~= nil then raise('Attention: added_kv_proj_dim is not supported') end
  if a.spatial_norm_dim ~= nil then raise('Attention: spatial_norm_dim is not supported') end
  if a.only_cross_attention then
    raise('Attention: only_cross_attention can only be set to true if added_kv_proj_dim is set (as in diffusers)')
  end
  self.inner_dim = a.out_dim or a.dim_head * a.heads
  self.query_dim = query_dim
  self.is_cross_attention = a.cross_attention_dim ~= nil
  self.cross_attention_dim = a.cross_attention_dim or query_dim
  self.upcast_attention = a.upcast_attention
  self.upcast_softmax = a.upcast_softmax
  self.rescale_output_factor = a.rescale_output_factor
  self.residual_connection = a.residual_connection
  self.out_dim = a.out_dim or query_dim
  self.scale = a.scale_qk and a.dim_head ^ -0.5 or 1.0
  self.heads = a.out_dim and math.floor(a.out_dim / a.dim_head) or a.heads
  if a.norm_num_groups ~= nil then
    self.group_norm = nn.GroupNorm(a.norm_num_groups, query_dim, a.eps, true, U.fo(a))
  end
  if a.cross_attention_norm == 'layer_norm' then
    self.norm_cross = nn.LayerNorm(self.cross_attention_dim, U.fo(a))
  elseif a.cross_attention_norm == 'group_norm' then
    self.norm_cross = nn.GroupNorm(a.cross_attention_norm_num_groups, self.cross_attention_dim, 1e-5, true, U.fo(a))
  elseif a.cross_attention_norm ~= nil then
    raise("Attention: unknown cross_attention_norm '" .. tostring(a.cross_attention_norm) ..
      "' (valid: nil, 'layer_norm', 'group_norm')")
  end
  self.to_q = nn.Linear(query_dim, self.inner_dim, a.bias, U.fo(a))
  self.to_k = nn.Linear(self.cross_attention_dim, self.inner_dim, a.bias, U.fo(a))
  self.to_v = nn.Linear(self.cross_attention_dim, self.inner_dim, a.bias, U.fo(a))
  self.to_out = nn.ModuleList({ nn.Linear(self.inner_dim, self.out_dim, a.out_bias, U.fo(a)), nn.Dropout(a.dropout) })
end

-- [B, L, h*d] -> [B, h, L, d] (a view)
local function heads_view(t, h)
  local s = t:shape()
  return t:view(s[1], s[2], h, s[3] / h):transpose(1, 2)
end

-- forward(hidden_states [B, N, C] or [B, C, H, W], encoder_hidden_states [B, L, Cx] or nil,
--         attention_mask (additive, broadcastable to [B, heads, N, L]) or nil)
function Attention:forward(hidden_states, encoder_hidden_states, attention_mask)
  local residual = hidden_states
  local x = hidden_states
  local B, Ch, H, W
  local four = x:dim() == 4
  if four then
    B, Ch, H, W = unpack(x:shape())
    if self.group_norm then x = self.group_norm(x) end
    x = x:view(B, Ch, H * W):transpose(1, 2)
  elseif self.group_norm then
    x = self.group_norm(x:transpose(1, 2)):transpose(1, 2)
  end
  local q = self.to_q(x)
  local ctx = encoder_hidden_states
  if ctx == nil then ctx = x elseif self.norm_cross then ctx = self.norm_cross(ctx) end
  local k = self.to_k(ctx)
  local v = self.to_v(ctx)
  local h = self.heads
  if attention_mask ~= nil and attention_mask:dim() == 3 then attention_mask = attention_mask:unsqueeze(1) end
  local o = F.scaled_dot_product_attention(heads_view(q, h), heads_view(k, h), heads_view(v, h),
    { attn_mask = attention_mask, scale = self.scale })
  local s = o:shape()
  o = o:transpose(1, 2):reshape(s[1], s[3], s[2] * s[4])
  o = self.to_out[1](o)
  o = self.to_out[2](o)
  if four then o = o:transpose(-1, -2):reshape(B, Ch, H, W) end
  if self.residual_connection then o = o + residual end
  if self.rescale_output_factor ~= 1 then o = o / self.rescale_output_factor end
  return o
end
M.Attention = Attention

return M
