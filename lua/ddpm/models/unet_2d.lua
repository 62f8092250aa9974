-- models/unet_2d.lua: diffusers' UNet2DModel, the unconditional UNet with self-attention blocks
-- (v0.27.2 names, config keys and math): unet(sample, timesteps, {class_labels=}).sample
local ddpm = require 'ddpm'
local class = require 'ddpm.class'
local nn = require 'ddpm.nn'
local U = require 'ddpm.models.util'
local E = require 'ddpm.models.embeddings'
local B = require 'ddpm.models.unet_2d_blocks'
local Cfg = require 'ddpm.models.configuration'
local modeling = require 'ddpm.models.modeling'
local raise = require('ddpm.ffi').raise

local only = Cfg.only
local schema = Cfg.schema({
  { 'sample_size', nil, 'any' },
  { 'in_channels', 3, 'int' },
  { 'out_channels', 3, 'int' },
  { 'center_input_sample', false, 'bool' },
  { 'time_embedding_type', 'positional', 'string', only('positional') },
  { 'freq_shift', 0, 'number' },
  { 'flip_sin_to_cos', true, 'bool' },
  { 'down_block_types', { 'DownBlock2D', 'AttnDownBlock2D', 'AttnDownBlock2D', 'AttnDownBlock2D' }, 'list' },
  { 'up_block_types', { 'AttnUpBlock2D', 'AttnUpBlock2D', 'AttnUpBlock2D', 'UpBlock2D' }, 'list' },
  { 'block_out_channels', { 224, 448, 672, 896 }, 'list' },
  { 'layers_per_block', 2, 'int' },
  { 'mid_block_scale_factor', 1, 'number' },
  { 'downsample_padding', 1, 'int' },
  { 'downsample_type', 'conv', 'string', only('conv', 'resnet') },
  { 'upsample_type', 'conv', 'string', only('conv', 'resnet') },
  { 'dropout', 0.0, 'float' },
  { 'act_fn', 'silu', 'string' },
  { 'attention_head_dim', 8, 'int' },
  { 'norm_num_groups', 32, 'int' },
  { 'attn_norm_num_groups', nil, 'int' },
  { 'norm_eps', 1e-5, 'float' },
  { 'resnet_time_scale_shift', 'default', 'string', only('default', 'scale_shift') },
  { 'add_attention', true, 'bool' },
  { 'class_embed_type', nil, 'string', only(nil, 'timestep', 'identity') },
  { 'num_class_embeds', nil, 'int' },
  { 'num_train_timesteps', nil, 'int' },
})

local UNet2DModel = class('UNet2DModel', nn.Module)

-- UNet2DModel(config, {generator=, dtype=, device=})
function UNet2DModel:__init(config, opts)
  nn.Module.__init(self)
  opts = opts or {}
  local fa = { generator = opts.generator, dtype = opts.dtype, device = opts.device }
  local c = Cfg.resolve(schema, config, 'UNet2DModel')
  rawset(self, 'config', c)
  local boc = c.block_out_channels
  local n = #c.down_block_types
  for _, t in ipairs(c.down_block_types) do
    local ok = false
    for _, v in ipairs(B.down_block_types) do if v == t then ok = true end end
    if not ok or t == 'CrossAttnDownBlock2D' then
      raise(string.format("UNet2DModel: unknown down block type '%s' (valid: DownBlock2D, AttnDownBlock2D)", tostring(t)))
    end
  end
  for _, t in ipairs(c.up_block_types) do
    if t ~= 'UpBlock2D' and t ~= 'AttnUpBlock2D' then
      raise(string.format("UNet2DModel: unknown up block type '%s' (valid: UpBlock2D, AttnUpBlock2D)", tostring(t)))
    end
  end
  if #c.up_block_types ~= n then
    raise(string.format('UNet2DModel: must provide the same number of down_block_types (%d) and up_block_types (%d)', n,
      #c.up_block_types))
  end
  if #boc ~= n then
    raise(string.format('UNet2DModel: must provide the same number of block_out_channels (%d) as down_block_types (%d)',
      #boc, n))
  end
  self.sample_size = c.sample_size
  local time_embed_dim = boc[1] * 4

  self.conv_in = nn.Conv2d(c.in_channels, boc[1], 3, U.fo(fa, { padding = 1 }))
  self.time_proj = E.Timesteps(boc[1], c.flip_sin_to_cos, c.freq_shift)
  local tin = boc[1]
  self.time_embedding = E.TimestepEmbedding(tin, time_embed_dim, U.fo(fa))

  if c.class_embed_type == nil and c.num_class_embeds ~= nil then
    self.class_embedding = nn.Embedding(c.num_class_embeds, time_embed_dim, U.fo(fa))
  elseif c.class_embed_type == 'timestep' then
    self.class_embedding = E.TimestepEmbedding(tin, time_embed_dim, U.fo(fa))
  elseif c.class_embed_type == 'identity' then
    self.class_embedding = nn.Identity(time_embed_dim, time_embed_dim)
  end

  self.down_blocks = nn.ModuleList()
  self.up_blocks = nn.ModuleList() -- registered before mid_block, as in diffusers (state-dict order)
  local out_ch = boc[1]
  for i, t in ipairs(c.down_block_types) do
    local in_ch = out_ch
    out_ch = boc[i]
    self.down_blocks:append(B.get_down_block(t, U.fo(fa, { num_layers = c.layers_per_block, in_channels = in_ch,
      out_channels = out_ch, temb_channels = time_embed_dim, add_downsample = i ~= #boc, resnet_eps = c.norm_eps,
      resnet_act_fn = c.act_fn, resnet_groups = c.norm_num_groups, attention_head_dim = c.attention_head_dim or out_ch,
      downsample_padding = c.downsample_padding, resnet_time_scale_shift = c.resnet_time_scale_shift,
      downsample_type = c.downsample_type, dropout = c.dropout })))
  end

  self.mid_block = B.UNetMidBlock2D(U.fo(fa, { in_channels = boc[#boc], temb_channels = time_embed_dim,
    dropout = c.dropout, resnet_eps = c.norm_eps, resnet_act_fn = c.act_fn, output_scale_factor = c.mid_block_scale_factor,
    resnet_time_scale_shift = c.resnet_time_scale_shift, attention_head_dim = c.attention_head_dim or boc[#boc],
    resnet_groups = c.norm_num_groups, attn_groups = c.attn_norm_num_groups, add_attention = c.add_attention }))

  local rboc = {}
  for i = #boc, 1, -1 do rboc[#rboc + 1] = boc[i] end
  out_ch = rboc[1]
  for i, t in ipairs(c.up_block_types) do
    local prev = out_ch
    out_ch = rboc[i]
    local in_ch = rboc[math.min(i + 1, #boc)]
    self.up_blocks:append(B.get_up_block(t, U.fo(fa, { num_layers = c.layers_per_block + 1, in_channels = in_ch,
      out_channels = out_ch, prev_output_channel = prev, temb_channels = time_embed_dim, add_upsample = i ~= #boc,
      resnet_eps = c.norm_eps, resnet_act_fn = c.act_fn, resnet_groups = c.norm_num_groups,
      attention_head_dim = c.attention_head_dim or out_ch, resnet_time_scale_shift = c.resnet_time_scale_shift,
      upsample_type = c.upsample_type, dropout = c.dropout })))
  end

  local groups_out = c.norm_num_groups or math.min(math.floor(boc[1] / 4), 32)
  self.conv_norm_out = nn.GroupNorm(groups_out, boc[1], c.norm_eps, U.fo(fa))
  self.conv_act = nn.SiLU()
  self.conv_out = nn.Conv2d(boc[1], c.out_channels, 3, U.fo(fa, { padding = 1 }))
end

-- unet(sample [B, C, H, W], timestep (number or [B] tensor), {class_labels=}) -> {sample=}
function UNet2DModel:forward(sample, timestep, opts)
  opts = opts or {}
  local c = self.config
  if not ddpm.is_tensor(sample) or sample:dim() ~= 4 then raise('UNet2DModel: sample must be a [B, C, H, W] tensor') end
  if sample:size(1) ~= c.in_channels then
    raise(string.format('UNet2DModel: sample has %d channels, the model expects in_channels = %d', sample:size(1),
      c.in_channels))
  end
  if c.center_input_sample then sample = sample * 2 - 1.0 end
  local ts = timestep
  if type(ts) == 'number' then ts = math.floor(ts) end -- diffusers makes a long tensor here
  local t_emb = self.time_proj(require('ddpm.models.unet_2d_condition')._timestep_tensor(sample, ts))
  if t_emb.dtype ~= sample.dtype then t_emb = t_emb:to(sample.dtype) end
  local emb = self.time_embedding(t_emb)
  if self.class_embedding then
    local labels = opts.class_labels
    if labels == nil then raise('UNet2DModel: class_labels should be provided when doing class conditioning') end
    if c.class_embed_type == 'timestep' then labels = self.time_proj(labels) end
    local ce = self.class_embedding(labels)
    if ce.dtype ~= sample.dtype then ce = ce:to(sample.dtype) end
    emb = emb + ce
  elseif opts.class_labels ~= nil then
    raise('UNet2DModel: class_embedding needs to be initialized in order to use class conditioning')
  end

  sample = self.conv_in(sample)
  local res = { sample }
  for _, blk in ipairs(self.down_blocks) do
    local r
    sample, r = blk(sample, emb)
    for _, x in ipairs(r) do res[#res + 1] = x end
  end
  sample = self.mid_block(sample, emb)
  for _, blk in ipairs(self.up_blocks) do
    local k = #blk.resnets
    local skips = {}
    for i = 1, k do skips[i] = res[#res - k + i] end
    for _ = 1, k do res[#res] = nil end
    sample = blk(sample, skips, emb)
  end
  sample = self.conv_out(U.norm_act(self.conv_norm_out, self.conv_act, sample))
  return { sample = sample }
end

modeling.install(UNet2DModel, schema)
return UNet2DModel
