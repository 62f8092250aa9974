-- models/attention.lua: diffusers' FeedForward (GEGLU by default) and BasicTransformerBlock
-- (norm1 -> self-attention, norm2 -> cross-attention, norm3 -> feed-forward, each residual).
local class = require 'ddpm.class'
local nn = require 'ddpm.nn'
local U = require 'ddpm.models.util'
local A = require 'ddpm.models.activations'
local Attention = require('ddpm.models.attention_processor').Attention
local raise = require('ddpm.ffi').raise

local M = {}

-- FeedForward(dim, {dim_out=, mult=4, dropout=0, activation_fn='geglu', final_dropout=false,
--   inner_dim=, bias=true})
local FeedForward = class('FeedForward', nn.Module)
function FeedForward:__init(dim, opts)
  nn.Module.__init(self)
  local a = U.kw('FeedForward', opts, { { 'dim_out' }, { 'mult', 4 }, { 'dropout', 0.0 }, { 'activation_fn', 'geglu' },
    { 'final_dropout', false }, { 'inner_dim' }, { 'bias', true } })
  local inner = a.inner_dim or math.floor(dim * a.mult)
  local dim_out = a.dim_out or dim
  local act
  local fa = U.fo(a, { bias = a.bias })
  if a.activation_fn == 'gelu' then act = A.GELU(dim, inner, fa)
  elseif a.activation_fn == 'gelu-approximate' then
    fa.approximate = 'tanh'
    act = A.GELU(dim, inner, fa)
  elseif a.activation_fn == 'geglu' then act = A.GEGLU(dim, inner, fa)
  elseif a.activation_fn == 'geglu-approximate' then act = A.ApproximateGELU(dim, inner, fa)
  else
    raise("FeedForward: unknown activation_fn '" .. tostring(a.activation_fn) ..
      "' (valid: gelu, gelu-approximate, geglu, geglu-approximate)")
  end
  local layers = { act, nn.Dropout(a.dropout), nn.Linear(inner, dim_out, a.bias, U.fo(a)) }
  if a.final_dropout then layers[4] = nn.Dropout(a.dropout) end
  self.net = nn.ModuleList(layers)
end
function FeedForward:forward(x)
  local net = self.net
  for i = 1, #net do x = net[i](x) end
  return x
end
M.FeedForward = FeedForward

-- BasicTransformerBlock(dim, num_attention_heads, attention_head_dim, {dropout=0,
--   cross_attention_dim=, activation_fn='geglu', attention_bias=false, only_cross_attention=false,
--   double_self_attention=false, upcast_attention=false, norm_elementwise_affine=true,
--   norm_type='layer_norm', norm_eps=1e-5, final_dropout=false, attention_type='default',
--   ff_inner_dim=, ff_bias=true, attention_out_bias=true})
local BasicTransformerBlock = class('BasicTransformerBlock', nn.Module)
function BasicTransformerBlock:__init(dim, num_attention_heads, attention_head_dim, opts)
  nn.Module.__init(self)
  local a = U.kw('BasicTransformerBlock', opts, { { 'dropout', 0.0 }, { 'cross_attention_dim' },
    { 'activation_fn', 'geglu' }, { 'num_embeds_ada_norm' }, { 'attention_bias', false },
    { 'only_cross_attention', false }, { 'double_self_attention', false }, { 'upcast_attention', false },
    { 'norm_elementwise_affine', true }, { 'norm_type', 'layer_norm' }, { 'norm_eps', 1e-5 },
    { 'final_dropout', false }, { 'attention_type', 'default' }, { 'positional_embeddings' },
    { 'num_positional_embeddings' }, { 'ff_inner_dim' }, { 'ff_bias', true }, { 'attention_out_bias', true } })
  if a.norm_type ~= 'layer_norm' then
    raise("BasicTransformerBlock: norm_type '" .. tostring(a.norm_type) .. "' is not supported (only 'layer_norm')")
  end
  if a.attention_type ~= 'default' then
    raise("BasicTransformerBlock: attention_type '" .. tostring(a.attention_type) .. "' is not supported (only 'default')")
  end
  if a.positional_embeddings ~= nil then raise('BasicTransformerBlock: positional_embeddings are not supported') end
  self.only_cross_attention = a.only_cross_attention
  self.norm1 = nn.LayerNorm(dim, a.norm_eps, a.norm_elementwise_affine, U.fo(a))
  self.attn1 = Attention(dim, U.fo(a, { heads = num_attention_heads, dim_head = attention_head_dim, dropout = a.dropout,
    bias = a.attention_bias, cross_attention_dim = a.only_cross_attention and a.cross_attention_dim or nil,
    upcast_attention = a.upcast_attention, out_bias = a.attention_out_bias }))
  if a.cross_attention_dim ~= nil or a.double_self_attention then
    self.norm2 = nn.LayerNorm(dim, a.norm_eps, a.norm_elementwise_affine, U.fo(a))
    self.attn2 = Attention(dim, U.fo(a, { cross_attention_dim = (not a.double_self_attention) and a.cross_attention_dim or nil,
      heads = num_attention_heads, dim_head = attention_head_dim, dropout = a.dropout, bias = a.attention_bias,
      upcast_attention = a.upcast_attention, out_bias = a.attention_out_bias }))
  end
  self.norm3 = nn.LayerNorm(dim, a.norm_eps, a.norm_elementwise_affine, U.fo(a))
  self.ff = FeedForward(dim, U.fo(a, { dropout = a.dropout, activation_fn = a.activation_fn,
    final_dropout = a.final_dropout, inner_dim = a.ff_inner_dim, bias = a.ff_bias }))
end
-- forward(hidden_states [B, N, C], encoder_hidden_states [B, L, Cx], {attention_mask=,
--   encoder_attention_mask=})
function BasicTransformerBlock:forward(hidden_states, encoder_hidden_states, opts)
  local am = opts and opts.attention_mask
  local eam = opts and opts.encoder_attention_mask
  local n = self.norm1(hidden_states)
  local attn = self.attn1(n, self.only_cross_attention and encoder_hidden_states or nil, am)
  hidden_states = attn + hidden_states
  if self.attn2 then
    n = self.norm2(hidden_states)
    attn = self.attn2(n, encoder_hidden_states, eam)
    hidden_states = attn + hidden_states
  end
  n = self.norm3(hidden_states)
  return self.ff(n) + hidden_states
end
M.BasicTransformerBlock = BasicTransformerBlock

return M
