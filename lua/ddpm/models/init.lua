-- ddpm.models (≈ diffusers.models): the UNets and their building blocks, with diffusers'
-- parameter names so checkpoints move between diffusers and ddpm-lua.
local M = {}

-- None: an explicit null config value, e.g. {mid_block_type = ddpm.models.None}
M.None = require('ddpm.models.configuration').None

local lazy = {
  UNet2DConditionModel = function() return require 'ddpm.models.unet_2d_condition' end,
  UNet2DModel = function() return require 'ddpm.models.unet_2d' end,
}
local families = {
  'ddpm.models.embeddings', 'ddpm.models.activations', 'ddpm.models.attention_processor', 'ddpm.models.attention',
  'ddpm.models.transformer_2d', 'ddpm.models.resnet', 'ddpm.models.sampling', 'ddpm.models.unet_2d_blocks',
}
for _, f in ipairs(families) do
  for k, v in pairs(require(f)) do
    if type(k) == 'string' and k:sub(1, 1) ~= '_' and M[k] == nil then M[k] = v end
  end
end

return setmetatable(M, {
  __index = function(t, k)
    local f = lazy[k]
    if f then
      local v = f()
      rawset(t, k, v)
      return v
    end
  end,
})
