-- models/unet_2d_condition.lua: diffusers' UNet2DConditionModel (v0.27.2 parameter names, config
-- keys, defaults and math): conv_in, sinusoidal time embedding + MLP, optional class embedding,
-- encoder_hid_proj ('text_proj'), down blocks, mid block, up blocks with skips, norm-act-conv_out.
--   local unet = ddpm.models.UNet2DConditionModel{sample_size=16, in_channels=3, ...}
--   local out = unet(sample, timesteps, encoder_hidden_states, {class_labels=}).sample
local ddpm = require 'ddpm'
local class = require 'ddpm.class'
local nn = require 'ddpm.nn'
local U = require 'ddpm.models.util'
local E = require 'ddpm.models.embeddings'
local B = require 'ddpm.models.unet_2d_blocks'
local Cfg = require 'ddpm.models.configuration'
local modeling = require 'ddpm.models.modeling'
local raise = require('ddpm.ffi').raise

local only, only_nil = Cfg.only, Cfg.only_nil
local schema = Cfg.schema({
  { 'sample_size', nil, 'any' },
  { 'in_channels', 4, 'int' },
  { 'out_channels', 4, 'int' },
  { 'center_input_sample', false, 'bool' },
  { 'flip_sin_to_cos', true, 'bool' },
  { 'freq_shift', 0, 'number' },
  { 'down_block_types', { 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D' }, 'list' },
  { 'mid_block_type', 'UNetMidBlock2DCrossAttn', 'string', only('UNetMidBlock2DCrossAttn', 'UNetMidBlock2D', nil) },
  { 'up_block_types', { 'UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D' }, 'list' },
  { 'only_cross_attention', false, 'any' },
  { 'block_out_channels', { 320, 640, 1280, 1280 }, 'list' },
  { 'layers_per_block', 2, 'any' },
  { 'downsample_padding', 1, 'int' },
  { 'mid_block_scale_factor', 1, 'number' },
  { 'dropout', 0.0, 'float' },
  { 'act_fn', 'silu', 'string' },
  { 'norm_num_groups', 32, 'int' },
  { 'norm_eps', 1e-5, 'float' },
  { 'cross_attention_dim', 1280, 'any' },
  { 'transformer_layers_per_block', 1, 'any' },
  { 'reverse_transformer_layers_per_block', nil, 'any' },
  { 'encoder_hid_dim', nil, 'int' },
  { 'encoder_hid_dim_type', nil, 'string', only(nil, 'text_proj') },
  { 'attention_head_dim', 8, 'any' },
  { 'num_attention_heads', nil, 'any', function(v)
    if v ~= nil then
      return 'diffusers 0.27.2 refuses num_attention_heads (a naming issue, diffusers#2011); in this model ' ..
        'attention_head_dim is the number of heads: set that instead'
    end
  end },
  { 'dual_cross_attention', false, 'bool', only(false) },
  { 'use_linear_projection', false, 'bool' },
  { 'class_embed_type', nil, 'string', only(nil, 'timestep', 'identity', 'projection', 'simple_projection') },
  { 'addition_embed_type', nil, 'string', only_nil },
  { 'addition_time_embed_dim', nil, 'int' },
  { 'num_class_embeds', nil, 'int' },
  { 'upcast_attention', false, 'bool' },
  { 'resnet_time_scale_shift', 'default', 'string', only('default', 'scale_shift') },
  { 'resnet_skip_time_act', false, 'bool' },
  { 'resnet_out_scale_factor', 1.0, 'float' },
  { 'time_embedding_type', 'positional', 'string', only('positional') },
  { 'time_embedding_dim', nil, 'int' },
  { 'time_embedding_act_fn', nil, 'string' },
  { 'timestep_post_act', nil, 'string' },
  { 'time_cond_proj_dim', nil, 'int' },
  { 'conv_in_kernel', 3, 'int' },
  { 'conv_out_kernel', 3, 'int' },
  { 'projection_class_embeddings_input_dim', nil, 'int' },
  { 'attention_type', 'default', 'string', only('default') },
  { 'class_embeddings_concat', false, 'bool' },
  { 'mid_block_only_cross_attention', nil, 'bool' },
  { 'cross_attention_norm', nil, 'string' },
  { 'addition_embed_type_num_heads', 64, 'int' },
})

local UNet2DConditionModel = class('UNet2DConditionModel', nn.Module)

local function per_block(v, n)
  if type(v) == 'table' then return v end
  local t = {}
  for i = 1, n do t[i] = v end
  return t
end
local function reversed(t)
  local r = {}
  for i = #t, 1, -1 do r[#r + 1] = t[i] end
  return r
end

local function check_config(c, owner)
  local nd = #c.down_block_types
  local function known(list, valid, what)
    for _, t in ipairs(list) do
      local ok = false
      for _, v in ipairs(valid) do if t == v then ok = true end end
      if not ok then
        raise(string.format("%s: unknown %s '%s' (valid: %s)", owner, what, tostring(t), table.concat(valid, ', ')))
      end
    end
  end
  known(c.down_block_types, B.down_block_types, 'down block type')
  known(c.up_block_types, B.up_block_types, 'up block type')
  local function same_len(key, v)
    if type(v) == 'table' and #v ~= nd then
      raise(string.format('%s: must provide the same number of %s as down_block_types (%d), got %d', owner, key, nd, #v))
    end
  end
  if #c.up_block_types ~= nd then
    raise(string.format('%s: must provide the same number of down_block_types (%d) and up_block_types (%d)', owner, nd,
      #c.up_block_types))
  end
  if #c.block_out_channels ~= nd then
    raise(string.format('%s: must provide the same number of block_out_channels (%d) as down_block_types (%d)', owner,
      #c.block_out_channels, nd))
  end
  same_len('only_cross_attention', c.only_cross_attention)
  same_len('attention_head_dim', c.attention_head_dim)
  same_len('cross_attention_dim', c.cross_attention_dim)
  same_len('layers_per_block', c.layers_per_block)
  if type(c.transformer_layers_per_block) == 'table' and c.reverse_transformer_layers_per_block == nil then
    for _, v in ipairs(c.transformer_layers_per_block) do
      if type(v) == 'table' then raise(owner .. ": must provide 'reverse_transformer_layers_per_block' if using asymmetrical UNet") end
    end
  end
  if c.norm_num_groups ~= nil then
    for _, ch in ipairs(c.block_out_channels) do
      if ch % c.norm_num_groups ~= 0 then
        raise(string.format('%s: every block_out_channels value must be divisible by norm_num_groups (%d), got %d',
          owner, c.norm_num_groups, ch))
      end
    end
  end
end

-- UNet2DConditionModel(config, {generator=, dtype=, device=})
function UNet2DConditionModel:__init(config, opts)
  nn.Module.__init(self)
  opts = opts or {}
  local fa = { generator = opts.generator, dtype = opts.dtype, device = opts.device }
  local c = Cfg.resolve(schema, config, 'UNet2DConditionModel')
  check_config(c, 'UNet2DConditionModel')
  -- diffusers records this default in the config too
  if c.encoder_hid_dim_type == nil and c.encoder_hid_dim ~= nil then c.encoder_hid_dim_type = 'text_proj' end
  if c.encoder_hid_dim == nil and c.encoder_hid_dim_type ~= nil then
    raise('UNet2DConditionModel: encoder_hid_dim has to be defined when encoder_hid_dim_type is set to ' ..
      c.encoder_hid_dim_type)
  end
  rawset(self, 'config', c)
  self.sample_size = c.sample_size
  local boc = c.block_out_channels
  local nblocks = #c.down_block_types
  -- the number of heads is attention_head_dim in this model (diffusers#2011)
  local num_heads = c.num_attention_heads or c.attention_head_dim

  local pad_in = math.floor((c.conv_in_kernel - 1) / 2)
  self.conv_in = nn.Conv2d(c.in_channels, boc[1], c.conv_in_kernel, U.fo(fa, { padding = pad_in }))

  local time_embed_dim = c.time_embedding_dim or boc[1] * 4
  local timestep_input_dim = boc[1]
  self.time_proj = E.Timesteps(boc[1], c.flip_sin_to_cos, c.freq_shift)
  self.time_embedding = E.TimestepEmbedding(timestep_input_dim, time_embed_dim, U.fo(fa, { act_fn = c.act_fn,
    post_act_fn = c.timestep_post_act, cond_proj_dim = c.time_cond_proj_dim }))

  local xdim = c.cross_attention_dim
  if c.encoder_hid_dim_type == 'text_proj' then
    if type(xdim) == 'table' then raise('UNet2DConditionModel: text_proj needs a single cross_attention_dim') end
    self.encoder_hid_proj = nn.Linear(c.encoder_hid_dim, xdim, U.fo(fa))
  end

  local cet = c.class_embed_type
  if cet == nil and c.num_class_embeds ~= nil then
    self.class_embedding = nn.Embedding(c.num_class_embeds, time_embed_dim, U.fo(fa))
  elseif cet == 'timestep' then
    self.class_embedding = E.TimestepEmbedding(timestep_input_dim, time_embed_dim, U.fo(fa, { act_fn = c.act_fn }))
  elseif cet == 'identity' then
    self.class_embedding = nn.Identity(time_embed_dim, time_embed_dim)
  elseif cet == 'projection' or cet == 'simple_projection' then
    local pin = c.projection_class_embeddings_input_dim
    if pin == nil then
      raise("UNet2DConditionModel: class_embed_type '" .. cet .. "' requires projection_class_embeddings_input_dim")
    end
    if cet == 'projection' then
      self.class_embedding = E.TimestepEmbedding(pin, time_embed_dim, U.fo(fa))
    else
      self.class_embedding = nn.Linear(pin, time_embed_dim, U.fo(fa))
    end
  end

  if c.time_embedding_act_fn ~= nil then self.time_embed_act = U.get_activation(c.time_embedding_act_fn) end

  self.down_blocks = nn.ModuleList()
  self.up_blocks = nn.ModuleList()

  local only_x = c.only_cross_attention
  local mid_only_x = c.mid_block_only_cross_attention
  if type(only_x) ~= 'table' then
    if mid_only_x == nil then mid_only_x = only_x end
    only_x = per_block(only_x, nblocks)
  end
  if mid_only_x == nil then mid_only_x = false end
  local heads = per_block(num_heads, nblocks)
  local head_dims = per_block(c.attention_head_dim, nblocks)
  local xdims = per_block(xdim, nblocks)
  local lpb = per_block(c.layers_per_block, nblocks)
  local tlpb = per_block(c.transformer_layers_per_block, nblocks)
  local blocks_temb = c.class_embeddings_concat and time_embed_dim * 2 or time_embed_dim

  local out_ch = boc[1]
  for i, t in ipairs(c.down_block_types) do
    local in_ch = out_ch
    out_ch = boc[i]
    local final = i == #boc
    self.down_blocks:append(B.get_down_block(t, U.fo(fa, {
      num_layers = lpb[i], transformer_layers_per_block = tlpb[i], in_channels = in_ch, out_channels = out_ch,
      temb_channels = blocks_temb, add_downsample = not final, resnet_eps = c.norm_eps, resnet_act_fn = c.act_fn,
      resnet_groups = c.norm_num_groups, cross_attention_dim = xdims[i], num_attention_heads = heads[i],
      downsample_padding = c.downsample_padding, dual_cross_attention = c.dual_cross_attention,
      use_linear_projection = c.use_linear_projection, only_cross_attention = only_x[i],
      upcast_attention = c.upcast_attention, resnet_time_scale_shift = c.resnet_time_scale_shift,
      attention_type = c.attention_type, attention_head_dim = head_dims[i] or out_ch, dropout = c.dropout })))
  end

  self.mid_block = B.get_mid_block(c.mid_block_type, U.fo(fa, {
    temb_channels = blocks_temb, in_channels = boc[#boc], resnet_eps = c.norm_eps, resnet_act_fn = c.act_fn,
    resnet_groups = c.norm_num_groups, output_scale_factor = c.mid_block_scale_factor,
    transformer_layers_per_block = tlpb[#tlpb], num_attention_heads = heads[#heads], cross_attention_dim = xdims[#xdims],
    dual_cross_attention = c.dual_cross_attention, use_linear_projection = c.use_linear_projection,
    upcast_attention = c.upcast_attention, resnet_time_scale_shift = c.resnet_time_scale_shift,
    attention_type = c.attention_type, dropout = c.dropout }))

  self.num_upsamplers = 0
  local rboc, rheads, rlpb, rxdims = reversed(boc), reversed(heads), reversed(lpb), reversed(xdims)
  local rtlpb = c.reverse_transformer_layers_per_block or reversed(tlpb)
  local ronly_x = reversed(only_x)
  out_ch = rboc[1]
  for i, t in ipairs(c.up_block_types) do
    local final = i == #boc
    local prev = out_ch
    out_ch = rboc[i]
    local in_ch = rboc[math.min(i + 1, #boc)]
    local add_up = not final
    if add_up then self.num_upsamplers = self.num_upsamplers + 1 end
    self.up_blocks:append(B.get_up_block(t, U.fo(fa, {
      num_layers = rlpb[i] + 1, transformer_layers_per_block = rtlpb[i], in_channels = in_ch, out_channels = out_ch,
      prev_output_channel = prev, temb_channels = blocks_temb, add_upsample = add_up, resnet_eps = c.norm_eps,
      resnet_act_fn = c.act_fn, resolution_idx = i - 1, resnet_groups = c.norm_num_groups,
      cross_attention_dim = rxdims[i], num_attention_heads = rheads[i], dual_cross_attention = c.dual_cross_attention,
      use_linear_projection = c.use_linear_projection, only_cross_attention = ronly_x[i],
      upcast_attention = c.upcast_attention, resnet_time_scale_shift = c.resnet_time_scale_shift,
      attention_type = c.attention_type, attention_head_dim = head_dims[i] or out_ch, -- [i], not reversed, as diffusers
      dropout = c.dropout })))
  end

  if c.norm_num_groups ~= nil then
    self.conv_norm_out = nn.GroupNorm(c.norm_num_groups, boc[1], c.norm_eps, U.fo(fa))
    self.conv_act = U.get_activation(c.act_fn)
  end
  local pad_out = math.floor((c.conv_out_kernel - 1) / 2)
  self.conv_out = nn.Conv2d(boc[1], c.out_channels, c.conv_out_kernel, U.fo(fa, { padding = pad_out }))
  self._mid_only_cross_attention = mid_only_x
end

-- timesteps as a [B] tensor: a number, a 0-d tensor or a [B] tensor (int or float)
local function timestep_tensor(sample, t)
  local n = sample:size(0)
  if type(t) == 'number' then
    local integral = t == math.floor(t)
    t = ddpm.full({ 1 }, t, { dtype = integral and ddpm.int64 or ddpm.float64, device = sample.device })
  elseif ddpm.is_tensor(t) then
    if t:dim() == 0 then t = t:reshape(1) end
    if t.device ~= sample.device then t = t:to(sample.device) end
  else
    raise('UNet: timestep must be a number or a tensor, got ' .. type(t))
  end
  if t:dim() ~= 1 or (t:size(0) ~= 1 and t:size(0) ~= n) then
    raise(string.format('UNet: timesteps must be a number or a tensor of shape [%d] (the batch), got [%s]', n,
      table.concat(t:shape(), ', ')))
  end
  return t:expand(n)
end
UNet2DConditionModel._timestep_tensor = timestep_tensor

-- unet(sample [B, C, H, W], timestep, encoder_hidden_states [B, L, D], {class_labels=,
--   timestep_cond=, attention_mask=, encoder_attention_mask=}) -> {sample = [B, out, H, W]}
function UNet2DConditionModel:forward(sample, timestep, encoder_hidden_states, opts)
  opts = opts or {}
  local c = self.config
  if not ddpm.is_tensor(sample) or sample:dim() ~= 4 then
    raise('UNet2DConditionModel: sample must be a [B, C, H, W] tensor')
  end
  if sample:size(1) ~= c.in_channels then
    raise(string.format('UNet2DConditionModel: sample has %d channels, the model expects in_channels = %d',
      sample:size(1), c.in_channels))
  end
  local up_factor = 2 ^ self.num_upsamplers
  local forward_upsample_size = false
  local H, W = sample:size(2), sample:size(3)
  if H % up_factor ~= 0 or W % up_factor ~= 0 then forward_upsample_size = true end

  local attention_mask, encoder_attention_mask
  if opts.attention_mask ~= nil then
    attention_mask = ((1 - opts.attention_mask:to(sample.dtype)) * -10000.0):unsqueeze(1)
  end
  if opts.encoder_attention_mask ~= nil then
    encoder_attention_mask = ((1 - opts.encoder_attention_mask:to(sample.dtype)) * -10000.0):unsqueeze(1)
  end
  local xopts = (attention_mask or encoder_attention_mask) and
    { attention_mask = attention_mask, encoder_attention_mask = encoder_attention_mask } or nil

  if c.center_input_sample then sample = sample * 2 - 1.0 end

  local t_emb = self.time_proj(timestep_tensor(sample, timestep))
  if t_emb.dtype ~= sample.dtype then t_emb = t_emb:to(sample.dtype) end
  local emb = self.time_embedding(t_emb, opts.timestep_cond)

  if self.class_embedding then
    local labels = opts.class_labels
    if labels == nil then raise('UNet2DConditionModel: class_labels should be provided when num_class_embeds > 0') end
    if c.class_embed_type == 'timestep' then
      labels = self.time_proj(labels)
      if labels.dtype ~= sample.dtype then labels = labels:to(sample.dtype) end
    end
    local class_emb = self.class_embedding(labels)
    if class_emb.dtype ~= sample.dtype then class_emb = class_emb:to(sample.dtype) end
    if c.class_embeddings_concat then emb = ddpm.cat({ emb, class_emb }, -1) else emb = emb + class_emb end
  end
  if self.time_embed_act then emb = self.time_embed_act(emb) end

  if self.encoder_hid_proj and encoder_hidden_states ~= nil then
    encoder_hidden_states = self.encoder_hid_proj(encoder_hidden_states)
  end

  sample = self.conv_in(sample)
  local res = { sample }
  for _, blk in ipairs(self.down_blocks) do
    local r
    if blk.has_cross_attention then
      sample, r = blk(sample, emb, encoder_hidden_states, xopts)
    else
      sample, r = blk(sample, emb)
    end
    for _, x in ipairs(r) do res[#res + 1] = x end
  end

  if self.mid_block then
    if self.mid_block.has_cross_attention then
      sample = self.mid_block(sample, emb, encoder_hidden_states, xopts)
    else
      sample = self.mid_block(sample, emb)
    end
  end

  local nup = #self.up_blocks
  for i, blk in ipairs(self.up_blocks) do
    local n = #blk.resnets
    local skips = {}
    for k = 1, n do skips[k] = res[#res - n + k] end
    for _ = 1, n do res[#res] = nil end
    local upsample_size
    if i < nup and forward_upsample_size then
      local last = res[#res]
      upsample_size = { last:size(2), last:size(3) }
    end
    if blk.has_cross_attention then
      sample = blk(sample, skips, emb, encoder_hidden_states, upsample_size, xopts)
    else
      sample = blk(sample, skips, emb, upsample_size)
    end
  end

  if self.conv_norm_out then
    sample = U.norm_act(self.conv_norm_out, self.conv_act, sample)
  end
  sample = self.conv_out(sample)
  return { sample = sample }
end

modeling.install(UNet2DConditionModel, schema)
return UNet2DConditionModel
