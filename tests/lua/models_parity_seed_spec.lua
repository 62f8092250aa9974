-- models_parity_seed_spec.lua: the blog-seed UNet2DConditionModel (hash-init weights, rebuilt
-- from fixtures/seed/unet/weights_index.json) against PyTorch + diffusers 0.27.2: prediction,
-- every recorded activation, the loss and the gradients of both the UNet and the label net.
local ddpm = require 'ddpm'
local X = require 'models_fixtures'

local have = X.have(X.fixtures .. '/seed/io.safetensors')

describe('UNet2DConditionModel parity (seed)', function()
  if not have then
    pending('fixtures not found under ' .. X.fixtures .. ' (set DDPM_SHARED)')
    return
  end
  local unet_sd, emb_sd = X.hash_state_dicts('seed')

  it('regenerates the hash-init weights exactly', function()
    local emb = X.load(X.fixtures .. '/seed/emb_net.safetensors')
    for k, v in pairs(emb) do assert.is_true(emb_sd[k]:equal(v), k) end
    -- reference values computed with Python integers (int32 view of the uint32 results)
    local bit = require 'bit'
    assert.are.equal(0, X.lowbias32(0))
    assert.are.equal(1753845952, X.lowbias32(1))
    assert.are.equal(-433535357, X.lowbias32(bit.tobit(0xdeadbeef)))
    assert.are.equal(1734902346, X.lowbias32(bit.tobit(0xffffffff)))
    assert.are.equal(0.8164768218994141, X.hash_tensor(3, { 6 }, 1.0, 2):select(0, 5):item())
    assert.are.equal(-0.000451553612947464, X.hash_tensor(10, { 12346 }, 0.0, 5):select(0, 12345):item())
    assert.are.equal(-0.07625362277030945, X.hash_tensor(0, { 1 }, 0.0, 2):item())
  end)

  it('matches out, activations, loss and gradients', function()
    local unet = ddpm.models.UNet2DConditionModel.from_config(X.fixtures .. '/seed/unet/config.json')
    unet:load_state_dict(unet_sd)
    local emb_net = X.label_net()
    emb_net:load_state_dict(emb_sd)
    local r = X.parity('seed', unet, emb_net)
    X.check_parity(r, unet)
  end)

  it('predicts the first sampling step of the trajectory', function()
    local tr = X.load(X.fixtures .. '/seed/trajectory.safetensors')
    local unet = ddpm.models.UNet2DConditionModel.from_config(X.fixtures .. '/seed/unet/config.json')
    unet:load_state_dict(unet_sd)
    unet:eval()
    local emb_net = X.label_net()
    emb_net:load_state_dict(emb_sd)
    ddpm.no_grad(function()
      local ehs = emb_net(tr.labels):unsqueeze(1)
      local t0 = tr.timesteps:select(0, 0):item()
      local eps = unet(tr.x_T, t0, ehs).sample
      local d, m = X.maxdiff(eps, tr.eps_first)
      assert.is_true(d <= 2e-6 * math.max(1, m), 'eps_first max |diff| ' .. d .. ' max ' .. m)
    end)
  end)
end)
