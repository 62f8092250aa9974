-- cuda_model_spec.lua: the reference job's UNet2DConditionModel on the GPU against the CPU: forward,
-- gradients of every parameter and an Adam step; a bfloat16-autocast step; a whole training step
-- and a sampling step captured as CUDA graphs and replayed.
local ddpm = require 'ddpm'
local U = require 'cuda_testutil'
local testing = require 'ddpm.testing'
jit.off() -- see cuda_ops_spec.lua

local cfg = { sample_size = 16, in_channels = 3, out_channels = 3, layers_per_block = 2, block_out_channels = { 64, 128 },
  down_block_types = { 'DownBlock2D', 'CrossAttnDownBlock2D' }, up_block_types = { 'CrossAttnUpBlock2D', 'UpBlock2D' },
  encoder_hid_dim = 64, cross_attention_dim = 64 }

local function gen(s) return { generator = ddpm.Generator():manual_seed(s) } end
local function model(dev)
  local m = ddpm.models.UNet2DConditionModel(cfg, gen(0))
  if dev ~= 'cpu' then m:to(dev) end
  return m
end
local function batch(dev, n)
  local x = ddpm.randn(n, 3, 16, 16, gen(1)):to(dev)
  local ehs = ddpm.randn(n, 1, 64, gen(2)):to(dev)
  local t = ddpm.randint(0, 200, { n }, gen(3)):to(dev)
  local noise = ddpm.randn(n, 3, 16, 16, gen(4)):to(dev)
  return x, t, ehs, noise
end
local function loss_of(unet, x, t, ehs, noise)
  return ddpm.nn.functional.mse_loss(unet(x, t, ehs).sample, noise)
end

describe('the reference UNet on CUDA', function()
  if not U.gpu() or U.dry then pending('needs a CUDA GPU: UNet2DConditionModel on CUDA vs CPU') return end

  it('forward, every gradient and an Adam step match the CPU', function()
    local mc, mg = model('cpu'), model('cuda')
    local lc = loss_of(mc, batch('cpu', 4))
    local lg = loss_of(mg, batch('cuda', 4))
    testing.assert_close(lg:cpu(), lc, { rtol = 1e-4, atol = 1e-5 })
    lc:backward()
    lg:backward()
    local pc, pg = mc:parameters(), mg:parameters()
    assert.are.equal(#pc, #pg)
    for i = 1, #pc do
      testing.assert_close(pg[i].grad:cpu(), pc[i].grad, { rtol = 1e-3, atol = 1e-4, msg = 'gradient ' .. i })
    end
    local oc, og = ddpm.optim.Adam(pc, { lr = 1e-4 }), ddpm.optim.Adam(pg, { lr = 1e-4 })
    oc:step()
    og:step()
    -- Adam's first step moves each weight by about lr * sign(grad): where a gradient is ~0 the
    -- rounding differences of the two devices may flip its sign, so allow 2.5 lr
    for i = 1, #pc do
      testing.assert_close(pg[i]:detach():cpu(), pc[i]:detach(), { rtol = 1e-5, atol = 2.5e-4, msg = 'parameter ' .. i })
    end
  end)

  it('trains under bfloat16 autocast with float32 master weights and gradients', function()
    local m = model('cuda')
    local x, t, ehs, noise = batch('cuda', 8)
    local ref = loss_of(m, x, t, ehs, noise):item()
    local loss = ddpm.autocast('cuda', { dtype = ddpm.bfloat16 }, function()
      local out = m(x, t, ehs).sample
      assert.are.equal(ddpm.bfloat16, out.dtype)
      return ddpm.nn.functional.mse_loss(out:float(), noise)
    end)
    assert.is_true(math.abs(loss:item() - ref) < 0.05 * math.abs(ref) + 1e-3, loss:item() .. ' vs ' .. ref)
    loss:backward()
    for _, p in ipairs(m:parameters()) do
      assert.are.equal(ddpm.float32, p.grad.dtype)
    end
    -- GradScaler with float16
    local scaler = ddpm.amp.GradScaler()
    local opt = ddpm.optim.Adam(m:parameters(), { lr = 1e-4 })
    opt:zero_grad()
    local l16 = ddpm.autocast('cuda', { dtype = ddpm.float16 }, function()
      return ddpm.nn.functional.mse_loss(m(x, t, ehs).sample:float(), noise)
    end)
    scaler:scale(l16):backward()
    scaler:step(opt)
    scaler:update()
  end)

  it('replays a captured training step (forward, backward, SGD update) like eager steps', function()
    local ma, mb = model('cuda'), model('cuda')
    local x, t, ehs, noise = batch('cuda', 8)
    local oa = ddpm.optim.SGD(ma:parameters(), { lr = 0.05 })
    local ob = ddpm.optim.SGD(mb:parameters(), { lr = 0.05 })
    local function step(m, o)
      o:zero_grad({ set_to_none = false })
      local loss = loss_of(m, x, t, ehs, noise)
      loss:backward()
      o:step()
      return loss
    end
    local eager = {}
    for k = 1, 4 do eager[k] = step(ma, oa):item() end
    local g, loss = ddpm.cuda.graph(function() return step(mb, ob) end, { warmup = 1 })
    for k = 2, 4 do
      g:replay()
      testing.assert_close(ddpm.tensor(loss:item()), ddpm.tensor(eager[k]), { rtol = 1e-4, atol = 1e-6 })
    end
    local pa, pb = ma:parameters(), mb:parameters()
    for i = 1, #pa do testing.assert_close(pb[i]:detach():cpu(), pa[i]:detach():cpu(), { rtol = 1e-4, atol = 1e-5 }) end
  end)

  it('replays a captured sampling step', function()
    local m = model('cuda')
    m:eval()
    local x, t, ehs = batch('cuda', 4)
    local function sample_step()
      return ddpm.no_grad(function()
        local eps = m(x, t, ehs).sample
        return x - eps * 0.1 + ddpm.randn(4, 3, 16, 16, { device = 'cuda' }) * 0.01
      end)
    end
    ddpm.manual_seed(21)
    local e1 = sample_step():cpu()
    ddpm.manual_seed(21)
    local g, out = ddpm.cuda.graph(sample_step)
    g:replay()
    testing.assert_close(out:cpu(), e1, { rtol = 1e-5, atol = 1e-5 })
  end)
end)
