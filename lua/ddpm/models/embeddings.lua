-- models/embeddings.lua: diffusers' sinusoidal Timesteps and the TimestepEmbedding MLP.
local ddpm = require 'ddpm'
local class = require 'ddpm.class'
local nn = require 'ddpm.nn'
local U = require 'ddpm.models.util'
local R = require 'ddpm.nn.pyrepr'
local raise = require('ddpm.ffi').raise

local M = {}

-- The frequencies exp(-log(max_period) * k / (half - shift)), computed in float32 in the same
-- op order as diffusers' get_timestep_embedding so the embedding matches bit for bit.
local function frequencies(half, shift, max_period, device)
  return ddpm.no_grad(function()
    local e = ddpm.arange(0, half, { dtype = ddpm.float32, device = device }) * (-math.log(max_period))
    return (e / (half - shift)):exp()
  end)
end

-- get_timestep_embedding(timesteps [N], dim, flip_sin_to_cos=false, downscale_freq_shift=1,
-- scale=1, max_period=10000) -> [N, dim] float32
function M.get_timestep_embedding(timesteps, dim, flip, shift, scale, max_period, freqs)
  if timesteps:dim() ~= 1 then raise('get_timestep_embedding: timesteps should be a 1-d tensor, got ' ..
    timesteps:dim() .. '-d') end
  local half = math.floor(dim / 2)
  freqs = freqs or frequencies(half, shift == nil and 1 or shift, max_period or 10000, timesteps.device)
  local emb = timesteps:float():unsqueeze(1) * freqs:unsqueeze(0)
  if scale and scale ~= 1 then emb = emb * scale end
  local s, c = emb:sin(), emb:cos()
  emb = flip and ddpm.cat({ c, s }, -1) or ddpm.cat({ s, c }, -1)
  if dim % 2 == 1 then emb = require('ddpm.nn.functional').pad(emb, { 0, 1, 0, 0 }) end
  return emb
end

-- Timesteps(num_channels, flip_sin_to_cos, downscale_freq_shift)
local Timesteps = class('Timesteps', nn.Module)
function Timesteps:__init(num_channels, flip_sin_to_cos, downscale_freq_shift)
  nn.Module.__init(self)
  self.num_channels = num_channels
  self.flip_sin_to_cos = flip_sin_to_cos and true or false
  self.downscale_freq_shift = downscale_freq_shift or 0
  self._freqs = {}
end
function Timesteps:forward(timesteps)
  local dev = tostring(timesteps.device)
  local f = self._freqs[dev]
  if not f then
    f = frequencies(math.floor(self.num_channels / 2), self.downscale_freq_shift, 10000, timesteps.device)
    self._freqs[dev] = f
  end
  return M.get_timestep_embedding(timesteps, self.num_channels, self.flip_sin_to_cos, self.downscale_freq_shift, 1,
    10000, f)
end
M.Timesteps = Timesteps

-- TimestepEmbedding(in_channels, time_embed_dim, {act_fn='silu', out_dim=, post_act_fn=,
-- cond_proj_dim=, sample_proj_bias=true})
local TimestepEmbedding = class('TimestepEmbedding', nn.Module)
function TimestepEmbedding:__init(in_channels, time_embed_dim, opts)
  nn.Module.__init(self)
  local a = U.kw('TimestepEmbedding', opts, { { 'act_fn', 'silu' }, { 'out_dim' }, { 'post_act_fn' },
    { 'cond_proj_dim' }, { 'sample_proj_bias', true } })
  self.linear_1 = nn.Linear(in_channels, time_embed_dim, a.sample_proj_bias, U.fo(a))
  if a.cond_proj_dim ~= nil then
    self.cond_proj = nn.Linear(a.cond_proj_dim, in_channels, false, U.fo(a))
  end
  self.act = U.get_activation(a.act_fn)
  self.linear_2 = nn.Linear(time_embed_dim, a.out_dim or time_embed_dim, a.sample_proj_bias, U.fo(a))
  if a.post_act_fn ~= nil then self.post_act = U.get_activation(a.post_act_fn) end
end
function TimestepEmbedding:forward(sample, condition)
  if condition ~= nil then
    if self.cond_proj == nil then raise('TimestepEmbedding: a condition was given but cond_proj_dim is not set') end
    sample = sample + self.cond_proj(condition)
  end
  sample = self.linear_1(sample)
  if self.act then sample = self.act(sample) end
  sample = self.linear_2(sample)
  if self.post_act then sample = self.post_act(sample) end
  return sample
end
M.TimestepEmbedding = TimestepEmbedding

M._repr = R
return M
