-- models_blocks_spec.lua: the diffusers building blocks and other UNet configurations: the
-- timestep embedding formula, Attention against its definition, parameter names, a three-level
-- UNet with dropout, class embeddings, linear projections, odd sizes and UNet2DModel.
local ddpm = require 'ddpm'
local X = require 'models_fixtures'
local M = ddpm.models
local nn = ddpm.nn

local function gen(s) return { generator = ddpm.Generator():manual_seed(s) } end

local function grads_everywhere(model)
  local missing = {}
  for name, p in model:named_parameters() do
    -- with one key token cross-attention ignores its query: attn2.to_q/to_k and the norm2 before
    -- it get exactly zero gradient (as in PyTorch)
    local xq = name:match('attn2%.to_[qk]%.weight$') or name:match('transformer_blocks%.%d+%.norm2%.')
    if not xq and (p.grad == nil or p.grad:abs():amax():item() == 0) then
      missing[#missing + 1] = name
    end
  end
  return missing
end

describe('diffusers building blocks', function()
  it('Timesteps follows get_timestep_embedding (flip_sin_to_cos, downscale_freq_shift)', function()
    local t = ddpm.tensor({ 0, 3, 250 }, { dtype = ddpm.int64 })
    for _, case in ipairs({ { true, 0 }, { false, 1 } }) do
      local flip, shift = case[1], case[2]
      local e = M.Timesteps(8, flip, shift)(t)
      assert.are.same({ 3, 8 }, e:shape())
      for r, tv in ipairs({ 0, 3, 250 }) do
        for k = 0, 3 do
          local f = math.exp(-math.log(10000) * k / (4 - shift))
          local s, c = math.sin(tv * f), math.cos(tv * f)
          local row = e:select(0, r - 1)
          local first, second = row:select(0, k):item(), row:select(0, 4 + k):item()
          if flip then first, second = second, first end
          assert.is_true(math.abs(first - s) < 1e-4 and math.abs(second - c) < 1e-4)
        end
      end
    end
  end)

  it('Attention computes softmax(q k^T / sqrt(d)) v per head, for tokens and for images', function()
    local a = M.Attention(8, { heads = 2, dim_head = 4, generator = ddpm.Generator():manual_seed(1) })
    local x = ddpm.randn(2, 5, 8, gen(2))
    local ctx = ddpm.randn(2, 3, 8, gen(3))
    local function ref(q_in, kv_in)
      local q, k, v = a.to_q(q_in), a.to_k(kv_in), a.to_v(kv_in)
      local outs = {}
      for h = 0, 1 do
        local qh, kh, vh = q:narrow(2, 4 * h, 4), k:narrow(2, 4 * h, 4), v:narrow(2, 4 * h, 4)
        local s = qh:matmul(kh:transpose(1, 2)) / 2
        local p = (s - s:amax(-1, true)):exp()
        p = p / p:sum(-1, true)
        outs[#outs + 1] = p:matmul(vh)
      end
      return a.to_out[1](ddpm.cat(outs, 2))
    end
    ddpm.testing.assert_close(a(x), ref(x, x), { atol = 1e-5 })
    ddpm.testing.assert_close(a(x, ctx), ref(x, ctx), { atol = 1e-5 })
    -- image form with group norm and residual (UNet2DModel's attention blocks)
    local ai = M.Attention(8, { heads = 2, dim_head = 4, norm_num_groups = 2, residual_connection = true, bias = true,
      rescale_output_factor = 2.0, generator = ddpm.Generator():manual_seed(5) })
    local img = ddpm.randn(2, 8, 3, 3, gen(6))
    local tokens = ai.group_norm(img):reshape(2, 8, 9):transpose(1, 2)
    local q, k, v = ai.to_q(tokens), ai.to_k(tokens), ai.to_v(tokens)
    local outs = {}
    for h = 0, 1 do
      local s = q:narrow(2, 4 * h, 4):matmul(k:narrow(2, 4 * h, 4):transpose(1, 2)) / 2
      local p = (s - s:amax(-1, true)):exp()
      outs[#outs + 1] = (p / p:sum(-1, true)):matmul(v:narrow(2, 4 * h, 4))
    end
    local o = ai.to_out[1](ddpm.cat(outs, 2)):transpose(1, 2):reshape(2, 8, 3, 3)
    ddpm.testing.assert_close(ai(img), (o + img) / 2, { atol = 1e-5 })
  end)

  it('uses diffusers parameter names in the transformer and resnet blocks', function()
    local t = M.Transformer2DModel(2, 16, { in_channels = 32, cross_attention_dim = 20, norm_num_groups = 8 })
    local keys = table.concat(t:state_dict_keys(), ' ')
    for _, k in ipairs({ 'norm.weight', 'proj_in.weight', 'transformer_blocks.0.norm1.weight',
      'transformer_blocks.0.attn1.to_q.weight', 'transformer_blocks.0.attn2.to_k.weight',
      'transformer_blocks.0.attn2.to_out.0.bias', 'transformer_blocks.0.ff.net.0.proj.weight',
      'transformer_blocks.0.ff.net.2.weight', 'transformer_blocks.0.norm3.bias', 'proj_out.bias' }) do
      assert.is_truthy(keys:find(k, 1, true), k)
    end
    assert.is_nil(keys:find('to_q.bias', 1, true))
    assert.are.same({ 32, 20 }, t.transformer_blocks[1].attn2.to_k.weight:shape())
    assert.are.same({ 256, 32 }, t.transformer_blocks[1].ff.net[1].proj.weight:shape())
    local lin = M.Transformer2DModel(2, 16, { in_channels = 32, cross_attention_dim = 20, norm_num_groups = 8,
      use_linear_projection = true })
    assert.are.same({ 32, 32 }, lin.proj_in.weight:shape())
    local y = lin(ddpm.randn(2, 32, 4, 4), ddpm.randn(2, 1, 20))
    assert.are.same({ 2, 32, 4, 4 }, y:shape())
    local r = M.ResnetBlock2D(32, { out_channels = 64, temb_channels = 16, groups = 8 })
    assert.are.same({ 'norm1.weight', 'norm1.bias', 'conv1.weight', 'conv1.bias', 'time_emb_proj.weight',
      'time_emb_proj.bias', 'norm2.weight', 'norm2.bias', 'conv2.weight', 'conv2.bias', 'conv_shortcut.weight',
      'conv_shortcut.bias' }, r:state_dict_keys())
    assert.are.same({ 2, 64, 4, 4 }, r(ddpm.randn(2, 32, 4, 4), ddpm.randn(2, 16)):shape())
    local printed = tostring(t)
    assert.matches('(attn2): Attention(\n', printed, 1, true)
    assert.matches('(0): GEGLU(\n', printed, 1, true)
  end)

  it('builds and trains a three-level UNet (DownBlock2D, DownBlock2D, CrossAttnDownBlock2D, dropout 0.2)', function()
    local unet = M.UNet2DConditionModel({ sample_size = 16, in_channels = 3, out_channels = 3, layers_per_block = 1,
      block_out_channels = { 64, 128, 256 }, down_block_types = { 'DownBlock2D', 'DownBlock2D', 'CrossAttnDownBlock2D' },
      up_block_types = { 'CrossAttnUpBlock2D', 'UpBlock2D', 'UpBlock2D' }, encoder_hid_dim = 64, dropout = 0.2,
      cross_attention_dim = 64 }, gen(0))
    assert.are.equal(0.2, unet.down_blocks[1].resnets[1].dropout.p)
    local x = ddpm.randn(2, 3, 16, 16, gen(1))
    local ehs = ddpm.randn(2, 1, 64, gen(2))
    local t = ddpm.tensor({ 3, 150 }, { dtype = ddpm.int64 })
    unet:train()
    local out = unet(x, t, ehs).sample
    assert.are.same({ 2, 3, 16, 16 }, out:shape())
    out:square():mean():backward()
    assert.are.same({}, grads_everywhere(unet))
    unet:eval()
    ddpm.no_grad(function()
      local a, b = unet(x, t, ehs).sample, unet(x, t, ehs).sample
      assert.is_true(a:equal(b)) -- dropout is off in eval mode
      -- a number timestep means the same step for the whole batch
      local n = unet(x, 150, ehs).sample
      local tt = unet(x, ddpm.tensor({ 150, 150 }, { dtype = ddpm.int64 }), ehs).sample
      assert.is_true(n:equal(tt))
    end)
  end)

  it('supports class embeddings (None + num_class_embeds, timestep, identity)', function()
    local base = { sample_size = 8, in_channels = 3, out_channels = 3, layers_per_block = 1, block_out_channels = { 32, 32 },
      down_block_types = { 'DownBlock2D', 'CrossAttnDownBlock2D' }, up_block_types = { 'CrossAttnUpBlock2D', 'UpBlock2D' },
      norm_num_groups = 8, cross_attention_dim = 16, attention_head_dim = 2 }
    local x = ddpm.randn(2, 3, 8, 8, gen(1))
    local ehs = ddpm.randn(2, 1, 16, gen(2))
    local function with(extra)
      local c = {}
      for k, v in pairs(base) do c[k] = v end
      for k, v in pairs(extra) do c[k] = v end
      return M.UNet2DConditionModel(c, gen(3))
    end
    local u = with({ num_class_embeds = 5 })
    assert.are.same({ 5, 128 }, u.class_embedding.weight:shape())
    local l1 = ddpm.tensor({ 0, 1 }, { dtype = ddpm.int64 })
    local l2 = ddpm.tensor({ 4, 1 }, { dtype = ddpm.int64 })
    ddpm.no_grad(function()
      local a = u(x, 10, ehs, { class_labels = l1 }).sample
      local b = u(x, 10, ehs, { class_labels = l2 }).sample
      assert.is_false(a:select(0, 0):equal(b:select(0, 0)))
      assert.is_true(a:select(0, 1):equal(b:select(0, 1)))
    end)
    local ok, err = pcall(function() return u(x, 10, ehs) end)
    assert.matches('class_labels should be provided', err)
    local ut = with({ class_embed_type = 'timestep' })
    assert.are.same({ 128, 32 }, ut.class_embedding.linear_1.weight:shape())
    assert.are.same({ 2, 3, 8, 8 }, ut(x, 10, ehs, { class_labels = l2 }).sample:shape())
    local ui = with({ class_embed_type = 'identity' })
    local out = ui(x, 10, ehs, { class_labels = ddpm.randn(2, 128) }).sample
    assert.are.same({ 2, 3, 8, 8 }, out:shape())
  end)

  it('runs the other supported config options forward and backward', function()
    local base = { sample_size = 8, in_channels = 3, out_channels = 3, layers_per_block = 1, block_out_channels = { 32, 32 },
      down_block_types = { 'DownBlock2D', 'CrossAttnDownBlock2D' }, up_block_types = { 'CrossAttnUpBlock2D', 'UpBlock2D' },
      norm_num_groups = 8, cross_attention_dim = 16, attention_head_dim = 2 }
    local x = ddpm.randn(2, 3, 8, 8, gen(1))
    local ehs = ddpm.randn(2, 3, 16, gen(2))
    local None = M.None
    local cases = {
      { {}, { encoder_attention_mask = ddpm.tensor({ { 1, 1, 0 }, { 1, 0, 0 } }) } },
      { { resnet_time_scale_shift = 'scale_shift' }, {} },
      { { time_embedding_act_fn = 'silu', timestep_post_act = 'gelu' }, {} },
      { { time_cond_proj_dim = 7 }, { timestep_cond = ddpm.randn(2, 7) } },
      { { class_embed_type = 'projection', projection_class_embeddings_input_dim = 5, class_embeddings_concat = true },
        { class_labels = ddpm.randn(2, 5) } },
      { { class_embed_type = 'simple_projection', projection_class_embeddings_input_dim = 5 },
        { class_labels = ddpm.randn(2, 5) } },
      { { conv_in_kernel = 1, conv_out_kernel = 5 }, {} },
      { { transformer_layers_per_block = { 1, 2 } }, {} },
      { { only_cross_attention = true }, {} },
      { { only_cross_attention = { false, true }, upcast_attention = true, use_linear_projection = true }, {} },
      { { mid_block_type = 'UNetMidBlock2D' }, {} },
      { { mid_block_type = None, layers_per_block = { 1, 2 }, attention_head_dim = { 2, 4 } }, {} },
      { { center_input_sample = true, flip_sin_to_cos = false, freq_shift = 1 }, {} },
      { { norm_num_groups = None }, {} },
    }
    for i, c in ipairs(cases) do
      local cfg = {}
      for k, v in pairs(base) do cfg[k] = v end
      for k, v in pairs(c[1]) do cfg[k] = v end
      local u = M.UNet2DConditionModel(cfg, gen(i))
      local out = u(x, 3, ehs, c[2]).sample
      assert.are.same({ 2, 3, 8, 8 }, out:shape())
      out:sum():backward()
      assert.is_truthy(u.conv_in.weight.grad, 'case ' .. i)
    end
    -- the masked-out key changes nothing: mask it and alter it
    local u = M.UNet2DConditionModel(base, gen(0))
    local mask = ddpm.tensor({ { 1, 1, 0 }, { 1, 1, 0 } })
    local e2 = ddpm.cat({ ehs:narrow(1, 0, 2), ehs:narrow(1, 2, 1) * 5 }, 1)
    ddpm.no_grad(function()
      local a = u(x, 3, ehs, { encoder_attention_mask = mask }).sample
      local b = u(x, 3, e2, { encoder_attention_mask = mask }).sample
      ddpm.testing.assert_close(a, b, { atol = 1e-5 })
    end)
    assert.is_nil(M.UNet2DConditionModel((function()
      local c = {}
      for k, v in pairs(base) do c[k] = v end
      c.mid_block_type = None
      return c
    end)()).mid_block)
    assert.matches('"mid_block_type": null', M.UNet2DConditionModel((function()
      local c = {}
      for k, v in pairs(base) do c[k] = v end
      c.mid_block_type = None
      return c
    end)()):to_json_string(), 1, true)
  end)

  it('handles sizes that are not multiples of the upsampling factor', function()
    if not rawget(nn.functional, 'interpolate') then pending('needs nn.functional.interpolate (nnops)') return end
    local unet = M.UNet2DConditionModel({ in_channels = 3, out_channels = 3, layers_per_block = 1,
      block_out_channels = { 32, 32, 32 }, down_block_types = { 'DownBlock2D', 'DownBlock2D', 'CrossAttnDownBlock2D' },
      up_block_types = { 'CrossAttnUpBlock2D', 'UpBlock2D', 'UpBlock2D' }, norm_num_groups = 8,
      cross_attention_dim = 8, attention_head_dim = 2 }, gen(0))
    local out = unet(ddpm.randn(1, 3, 10, 10, gen(1)), 5, ddpm.randn(1, 2, 8, gen(2))).sample
    assert.are.same({ 1, 3, 10, 10 }, out:shape())
  end)

  it('builds UNet2DModel with self-attention blocks and diffusers names', function()
    local unet = M.UNet2DModel({ sample_size = 8, block_out_channels = { 32, 64 }, layers_per_block = 1,
      down_block_types = { 'DownBlock2D', 'AttnDownBlock2D' }, up_block_types = { 'AttnUpBlock2D', 'UpBlock2D' },
      norm_num_groups = 8, attention_head_dim = 16 }, gen(0))
    local keys = unet:state_dict_keys()
    local joined = table.concat(keys, ' ')
    for _, k in ipairs({ 'down_blocks.1.attentions.0.group_norm.weight', 'down_blocks.1.attentions.0.to_q.bias',
      'mid_block.attentions.0.to_out.0.weight', 'up_blocks.0.attentions.1.to_v.weight',
      'up_blocks.0.upsamplers.0.conv.weight', 'time_embedding.linear_2.bias', 'conv_norm_out.weight' }) do
      assert.is_truthy(joined:find(k, 1, true), k)
    end
    assert.is_nil(joined:find('down_blocks.1.downsamplers', 1, true))
    -- state-dict order as diffusers: ..., down_blocks, up_blocks, mid_block, conv_norm_out, conv_out
    local pos = {}
    for i, k in ipairs(keys) do
      local top = k:match('^([%w_]+)')
      pos[top] = pos[top] or i
    end
    assert.is_true(pos.down_blocks < pos.up_blocks and pos.up_blocks < pos.mid_block and pos.mid_block < pos.conv_norm_out)
    assert.are.equal(4, unet.mid_block.attentions[1].heads) -- 64 channels / 16 per head
    local x = ddpm.randn(2, 3, 8, 8, gen(1))
    local out = unet(x, ddpm.tensor({ 1, 900 }, { dtype = ddpm.int64 })).sample
    assert.are.same({ 2, 3, 8, 8 }, out:shape())
    out:sum():backward()
    assert.are.same({}, grads_everywhere(unet))
    local dir = os.tmpname()
    os.remove(dir)
    unet:save_pretrained(dir)
    local back = M.UNet2DModel.from_pretrained(dir)
    ddpm.no_grad(function() assert.is_true(back(x, 7).sample:equal(unet:eval()(x, 7).sample)) end)
    assert.matches('"_class_name": "UNet2DModel"', back:to_json_string(), 1, true)
    os.remove(dir .. '/config.json')
    os.remove(dir .. '/diffusion_pytorch_model.safetensors')
    os.remove(dir)
  end)
end)
