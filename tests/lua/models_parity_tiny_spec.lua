-- models_parity_tiny_spec.lua: fixtures/tiny/unet loaded through the diffusers file layout
-- (config.json with non-default values + diffusers-written safetensors) reproduces diffusers'
-- prediction, activations, loss and gradients.
local ddpm = require 'ddpm'
local X = require 'models_fixtures'

local have = X.have(X.fixtures .. '/tiny/unet/config.json')

describe('UNet2DConditionModel parity (tiny, from_pretrained)', function()
  if not have then
    pending('fixtures not found under ' .. X.fixtures .. ' (set DDPM_SHARED)')
    return
  end
  it('loads the diffusers layout and matches out, activations, loss and gradients', function()
    local unet = ddpm.models.UNet2DConditionModel.from_pretrained(X.fixtures .. '/tiny/unet')
    assert.are.equal(8, unet.config.norm_num_groups)
    assert.are.equal(32, unet.config.cross_attention_dim)
    assert.are.equal(4, unet.down_blocks[2].attentions[1].transformer_blocks[1].attn1.heads)
    local emb_net = X.label_net()
    emb_net:load_state_dict(X.load(X.fixtures .. '/tiny/emb_net.safetensors'))
    local r = X.parity('tiny', unet, emb_net)
    X.check_parity(r, unet)
  end)
end)
