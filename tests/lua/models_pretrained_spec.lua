-- models_pretrained_spec.lua: configs and the diffusers file layout: from_config (table, file,
-- directory), save_pretrained writing what diffusers writes (config.json byte for byte, the same
-- safetensors keys/shapes/values), from_pretrained reading it back, and the config errors.
local ddpm = require 'ddpm'
local X = require 'models_fixtures'
local UNet = ddpm.models.UNet2DConditionModel

local have = X.have(X.fixtures .. '/tiny/unet/config.json')

local function read(path)
  local f = assert(io.open(path, 'rb'))
  local s = f:read('*a')
  f:close()
  return s
end
local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  return p .. '_unet'
end
local function rmdir(d)
  os.remove(d .. '/config.json')
  os.remove(d .. '/diffusion_pytorch_model.safetensors')
  os.remove(d)
end

local small = { sample_size = 8, in_channels = 3, out_channels = 3, layers_per_block = 1,
  block_out_channels = { 32, 64 }, down_block_types = { 'DownBlock2D', 'CrossAttnDownBlock2D' },
  up_block_types = { 'CrossAttnUpBlock2D', 'UpBlock2D' }, norm_num_groups = 8, cross_attention_dim = 16,
  attention_head_dim = 2, encoder_hid_dim = 12 }

describe('UNet2DConditionModel configs and files', function()
  it('writes config.json exactly as diffusers does', function()
    if not have then pending('fixtures not found under ' .. X.fixtures) return end
    for _, set in ipairs({ 'seed', 'tiny' }) do
      local path = X.fixtures .. '/' .. set .. '/unet/config.json'
      local unet = UNet.from_config(path)
      assert.are.equal(read(path), unet:to_json_string())
    end
  end)

  it('fills diffusers defaults and records encoder_hid_dim_type = text_proj', function()
    local unet = UNet(small)
    local c = unet.config
    assert.are.equal('text_proj', c.encoder_hid_dim_type)
    assert.are.equal(1e-5, c.norm_eps)
    assert.are.equal('UNetMidBlock2DCrossAttn', c.mid_block_type)
    assert.are.same({ 12, 16 }, { unet.encoder_hid_proj.in_features, unet.encoder_hid_proj.out_features })
    local js = unet:to_json_string()
    assert.matches('"_class_name": "UNet2DConditionModel",\n  "_diffusers_version": "0.27.2",', js, 1, true)
    assert.matches('"dropout": 0.0,', js, 1, true)
    assert.matches('"norm_eps": 1e-05,', js, 1, true)
    assert.matches('"class_embed_type": null,', js, 1, true)
    assert.matches('"block_out_channels": [\n    32,\n    64\n  ],', js, 1, true)
  end)

  it('saves and loads the diffusers layout (tiny fixture round trip)', function()
    if not have then pending('fixtures not found under ' .. X.fixtures) return end
    local unet = UNet.from_pretrained(X.fixtures .. '/tiny/unet')
    assert.is_false(unet.training)
    local dir = tmpdir()
    unet:save_pretrained(dir)
    assert.are.equal(read(X.fixtures .. '/tiny/unet/config.json'), read(dir .. '/config.json'))
    local ours, meta = ddpm.load_safetensors(dir .. '/diffusion_pytorch_model.safetensors')
    local ref = ddpm.load_safetensors(X.fixtures .. '/tiny/unet/diffusion_pytorch_model.safetensors')
    assert.are.equal('pt', meta.format)
    local n = 0
    for k, v in pairs(ref) do
      n = n + 1
      assert.is_truthy(ours[k], 'missing ' .. k)
      assert.are.equal(v.dtype, ours[k].dtype)
      assert.is_true(ours[k]:equal(v), k)
    end
    for k in pairs(ours) do assert.is_truthy(ref[k], 'extra key ' .. k) end
    assert.are.equal(210, n)
    -- and back: the same prediction
    local again = UNet.from_pretrained(dir)
    local x = ddpm.randn(1, 3, 16, 16, { generator = ddpm.Generator():manual_seed(3) })
    local e = ddpm.randn(1, 1, 64, { generator = ddpm.Generator():manual_seed(4) })
    ddpm.no_grad(function()
      assert.is_true(unet(x, 5, e).sample:equal(again(x, 5, e).sample))
    end)
    rmdir(dir)
  end)

  it('builds from a table, a config.json path or a directory', function()
    local dir = tmpdir()
    local unet = UNet(small, { generator = ddpm.Generator():manual_seed(0) })
    unet:save_pretrained(dir)
    local a = UNet.from_config(dir .. '/config.json')
    local b = UNet.from_config(dir)
    assert.are.equal(unet:to_json_string(), a:to_json_string())
    assert.are.equal(unet:to_json_string(), b:to_json_string())
    assert.are.same(unet:state_dict_keys(), b:state_dict_keys())
    local loaded = UNet.from_pretrained(dir)
    for k, v in pairs(unet:state_dict()) do assert.is_true(loaded:state_dict()[k]:equal(v), k) end
    local cfg = UNet.load_config(dir)
    assert.is_nil(cfg._class_name)
    assert.are.equal(12, cfg.encoder_hid_dim)
    rmdir(dir)
  end)

  it('names mistyped keys and unknown block types with the valid names', function()
    local cfg = {}
    for k, v in pairs(small) do cfg[k] = v end
    cfg.layers_per_blok = 2
    local ok, err = pcall(function() return UNet(cfg) end)
    assert.is_false(ok)
    assert.matches("models_pretrained_spec.lua:%d+: UNet2DConditionModel: unknown config key 'layers_per_blok' %(valid keys: ", err)
    assert.matches('layers_per_block', err, 1, true)
    cfg.layers_per_blok = nil
    cfg.down_block_types = { 'DownBlock2D', 'CrossAttnDownBlok2D' }
    ok, err = pcall(function() return UNet(cfg) end)
    assert.matches("unknown down block type 'CrossAttnDownBlok2D' %(valid: DownBlock2D, CrossAttnDownBlock2D, AttnDownBlock2D%)", err)
    cfg.down_block_types = small.down_block_types
    cfg.mid_block_type = 'UNetMidBlock2DSimpleCrossAttn'
    ok, err = pcall(function() return UNet(cfg) end)
    assert.matches('mid_block_type = UNetMidBlock2DSimpleCrossAttn: not supported by ddpm%-lua', err)
    cfg.mid_block_type = nil
    cfg.num_attention_heads = 4
    ok, err = pcall(function() return UNet(cfg) end)
    assert.matches('attention_head_dim is the number of heads', err)
    cfg.num_attention_heads = nil
    cfg.block_out_channels = { 32 }
    ok, err = pcall(function() return UNet(cfg) end)
    assert.matches('same number of block_out_channels %(1%) as down_block_types %(2%)', err)
    cfg.block_out_channels = small.block_out_channels
    cfg.norm_eps = 'small'
    ok, err = pcall(function() return UNet(cfg) end)
    assert.matches('config key norm_eps must be a number', err)
    ok, err = pcall(function() return UNet.from_pretrained('/nonexistent/dir') end)
    assert.matches('no config.json in /nonexistent/dir', err)
    ok, err = pcall(function() return ddpm.models.UNet2DModel({ down_block_types = { 'Down' } }) end)
    assert.matches("UNet2DModel: unknown down block type 'Down' %(valid: DownBlock2D, AttnDownBlock2D%)", err)
  end)

  it('ignores _-prefixed keys and refuses weights of another shape by name', function()
    if not have then pending('fixtures not found under ' .. X.fixtures) return end
    local cfg = UNet.load_config(X.fixtures .. '/tiny/unet')
    cfg._name_or_path = 'x'
    cfg.cross_attention_dim = 48
    local unet = UNet(cfg)
    local sd = ddpm.load_safetensors(X.fixtures .. '/tiny/unet/diffusion_pytorch_model.safetensors')
    local ok, err = pcall(function() unet:load_state_dict(sd) end)
    assert.is_false(ok)
    assert.matches('size mismatch for encoder_hid_proj.weight: copying a param with shape %[32, 64%] from checkpoint, '
      .. 'the shape in current model is %[48, 64%]', err)
  end)
end)
