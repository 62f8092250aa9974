-- e2e_pipeline_spec.lua: the sampling pipelines: determinism, classifier-free guidance (batched,
-- shapes, arithmetic), every scheduler, label forms, output types, no_grad/eval bookkeeping,
-- save_pretrained/load round trips and their errors.
local ddpm = require 'ddpm'
local h = require 'e2e_helpers'
local P = ddpm.pipelines

local function max_diff(a, b) return (a - b):abs():max():item() end

local function quiet(o)
  o = o or {}
  o.progress = false
  return o
end

describe('ConditionalDDPMPipeline', function()
  local unet, net, sched, pipe
  setup(function()
    unet, net = h.tiny_conditional(0)
    sched = ddpm.schedulers.DDPMScheduler{ num_train_timesteps = 10 }
    pipe = P.ConditionalDDPMPipeline(unet, net, sched)
  end)

  it('is deterministic for a generator and differs across seeds', function()
    local labels = { { 1, 0, 0, 0, 0 }, { 0, 0, 0, 1, 0 } }
    local a = pipe(labels, quiet{ generator = 3 }).images
    local b = pipe(labels, quiet{ generator = ddpm.Generator():manual_seed(3) }).images
    local c = pipe(labels, quiet{ generator = 4 }).images
    assert.are.same({ 2, 3, 8, 8 }, a:shape())
    assert.are.equal(0, max_diff(a, b))
    assert.is_true(max_diff(a, c) > 1e-3)
    assert.is_true(a:min():item() >= 0 and a:max():item() <= 1)
  end)

  it('accepts one-hot rows, class ids and tensors alike', function()
    local o = quiet{ generator = 1, num_inference_steps = 4 }
    local ref = pipe({ { 0, 1, 0, 0, 0 }, { 0, 0, 0, 0, 1 } }, o).images
    local forms = { { 1, 4 }, ddpm.tensor({ 1, 4 }, { dtype = ddpm.int64 }),
      ddpm.tensor({ { 0, 1, 0, 0, 0 }, { 0, 0, 0, 0, 1 } }) }
    for _, l in ipairs(forms) do
      assert.are.equal(0, max_diff(ref, pipe(l, quiet{ generator = 1, num_inference_steps = 4 }).images))
    end
  end)

  it('batches the conditional and unconditional passes for guidance, once per step', function()
    local calls = {}
    local hook = unet:register_forward_hook(function(_, args)
      calls[#calls + 1] = { args[1]:size(0), args[3]:size(0) }
    end)
    local out = pipe({ 0, 1, 2 }, quiet{ generator = 0, guidance_scale = 3, num_inference_steps = 5 })
    hook:remove()
    assert.are.same({ 3, 3, 8, 8 }, out.images:shape())
    assert.are.equal(5, #calls)
    for _, c in ipairs(calls) do assert.are.same({ 6, 6 }, c) end
    calls = {}
    hook = unet:register_forward_hook(function(_, args) calls[#calls + 1] = args[1]:size(0) end)
    pipe({ 0, 1, 2 }, quiet{ generator = 0, guidance_scale = 1, num_inference_steps = 5 })
    hook:remove()
    assert.are.same({ 3, 3, 3, 3, 3 }, calls)
  end)

  it('guides as uncond + s * (cond - uncond) with the all-zero label as uncond', function()
    -- one deterministic DDIM step (eta 0): its x0 is linear in the model output
    local s1 = ddpm.schedulers.DDIMScheduler{ num_train_timesteps = 10, clip_sample = false }
    local p1 = P.ConditionalDDPMPipeline(unet, net, s1)
    local x = ddpm.randn({ 2, 3, 8, 8 }, { generator = ddpm.Generator():manual_seed(9) })
    local lab = ddpm.tensor({ { 1, 0, 0, 0, 0 }, { 0, 0, 1, 0, 0 } })
    local got = p1(lab, quiet{ latents = x, guidance_scale = 2.5, num_inference_steps = 1, output_type = 'raw' }).images
    s1:set_timesteps(1)
    local t = s1:timestep_list()[1]
    local expected = ddpm.no_grad(function()
      unet:eval(); net:eval()
      local cond = unet(x, t, net(lab)).sample
      local uncond = unet(x, t, net(ddpm.zeros(2, 5))).sample
      return s1:step(uncond + (cond - uncond) * 2.5, t, x).prev_sample
    end)
    assert.is_true(max_diff(got, expected) < 1e-5)
  end)

  for _, case in ipairs({ { 'ddpm', {} }, { 'ddim', {} }, { 'ddim', { eta = 1 } }, { 'dpm', {} }, { 'euler_a', {} } }) do
    it('samples with the ' .. case[1] .. ' scheduler' .. (case[2].eta and ' (eta 1)' or ''), function()
      local s = ddpm.schedulers.get(case[1]).from_config(sched.config)
      local p = P.ConditionalDDPMPipeline(unet, net, s)
      local o = quiet{ generator = 2, num_inference_steps = 4, eta = case[2].eta, guidance_scale = 2 }
      local a = p({ 0, 4 }, o).images
      o.generator = 2
      local b = p({ 0, 4 }, o).images
      assert.are.same({ 2, 3, 8, 8 }, a:shape())
      assert.are.equal(0, max_diff(a, b))
      local sum = a:sum():item()
      assert.is_true(sum == sum) -- no NaN
      assert.are.equal(4, #s:timestep_list())
    end)
  end

  it('returns tensor, uint8, raw and png outputs', function()
    local o = function(t, extra)
      local r = quiet{ generator = 5, num_inference_steps = 3, output_type = t }
      for k, v in pairs(extra or {}) do r[k] = v end
      return r
    end
    local f = pipe({ 0, 1 }, o('tensor')).images
    local raw = pipe({ 0, 1 }, o('raw')).images
    local u8 = pipe({ 0, 1 }, o('uint8')).images
    assert.are.equal(0, max_diff(f, (raw / 2 + 0.5):clamp(0, 1)))
    assert.are.same({ 2, 8, 8, 3 }, u8:shape())
    assert.are.equal(ddpm.uint8, u8.dtype)
    local dir = h.tmpdir()
    local grid = pipe({ 0, 1 }, o('png', { path = dir .. '/g.png', scale = 2, nrow = 2 })).images
    local w, ht = h.png_size(dir .. '/g.png')
    assert.are.same({ grid:size(1), grid:size(0) }, { w, ht })
    assert.are.same({ 2 + 2 * (16 + 2), 2 + 16 + 2 }, { w, ht })
    h.rmdir(dir)
  end)

  it('runs under no_grad, in eval mode, restoring the train mode and calling back each step', function()
    unet:train(); net:train()
    local seen = {}
    local out = pipe({ 0 }, quiet{ generator = 0, num_inference_steps = 3,
      callback = function(i, t, x) seen[#seen + 1] = { i, t, x.requires_grad, unet.training } end })
    assert.is_false(out.images.requires_grad)
    assert.are.equal(3, #seen)
    assert.are.same({ 0, 1, 2 }, { seen[1][1], seen[2][1], seen[3][1] })
    assert.is_false(seen[1][3])
    assert.is_false(seen[1][4])
    assert.is_true(unet.training and net.training)
    for _, p in ipairs(unet:parameters()) do assert.is_nil(p.grad) end
  end)

  it('names bad labels and options', function()
    local function err(f)
      local ok, e = pcall(f)
      assert.is_false(ok)
      return tostring(e)
    end
    assert.matches('labels have 4 columns but the label net takes 5', err(function() pipe({ { 1, 0, 0, 0 } }, quiet()) end))
    assert.matches('class id 7 is out of range', err(function() pipe({ 7 }, quiet()) end))
    assert.matches("unknown option 'steps'", err(function() pipe({ 1 }, { steps = 3 }) end))
    assert.matches("unknown output_type 'pil'", err(function() pipe({ 1 }, quiet{ output_type = 'pil', num_inference_steps = 1 }) end))
    assert.matches('cannot be larger than num_train_timesteps', err(function()
      pipe({ 1 }, quiet{ num_inference_steps = 11 })
    end))
    assert.matches("output_type 'png' needs path", err(function()
      pipe({ 1 }, quiet{ output_type = 'png', num_inference_steps = 1 })
    end))
  end)

  it('saves in the diffusers layout and loads back to identical samples', function()
    local dir = h.tmpdir()
    local p = P.ConditionalDDPMPipeline(unet, net, sched, { class_names = { 'a', 'b', 'c', 'd', 'e' } })
    p:save_pretrained(dir)
    for _, f in ipairs({ 'model_index.json', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors',
      'scheduler/scheduler_config.json', 'class_net.safetensors', 'class_net.json' }) do
      assert.is_true(h.exists(dir .. '/' .. f), f)
    end
    local q = P.load(dir)
    assert.are.same({ 'a', 'b', 'c', 'd', 'e' }, q.class_names)
    assert.are.equal(5, q.num_classes)
    local o = quiet{ generator = 8, num_inference_steps = 4, guidance_scale = 2 }
    local a = p({ 1, 3 }, o).images
    o.generator = 8
    assert.are.equal(0, max_diff(a, q({ 1, 3 }, o).images))
    -- a scheduler swap on load keeps the training config
    local d = P.load(dir, { scheduler = 'ddim' })
    assert.are.equal('DDIMScheduler', d.scheduler.name)
    assert.are.equal(10, d.scheduler.config.num_train_timesteps)
    h.rmdir(dir)
  end)

  it('refuses directories without a pipeline', function()
    local dir = h.tmpdir()
    local ok, e = pcall(P.load, dir)
    assert.is_false(ok)
    assert.matches('holds no pipeline', tostring(e))
    ok, e = pcall(P.load, dir .. '/nope')
    assert.is_false(ok)
    assert.matches('does not exist', tostring(e))
    h.rmdir(dir)
  end)
end)

describe('DDPMPipeline', function()
  it('samples an unconditional UNet deterministically and round-trips through save/load', function()
    local unet = h.tiny_unconditional(1)
    local s = ddpm.schedulers.DDPMScheduler{ num_train_timesteps = 10 }
    local pipe = P.DDPMPipeline(unet, s)
    local a = pipe{ batch_size = 3, generator = 4, progress = false }.images
    local b = pipe(3, { generator = 4, progress = false }).images
    assert.are.same({ 3, 3, 8, 8 }, a:shape())
    assert.are.equal(0, max_diff(a, b))
    local dir = h.tmpdir()
    pipe:save_pretrained(dir)
    local idx = ddpm.io.json.read(dir .. '/model_index.json')
    assert.are.equal('DDPMPipeline', idx._class_name)
    assert.are.same({ 'diffusers', 'UNet2DModel' }, idx.unet)
    assert.is_false(h.exists(dir .. '/class_net.json'))
    local q = P.load(dir)
    assert.are.equal('DDPMPipeline', q.name)
    assert.are.equal(0, max_diff(a, q{ batch_size = 3, generator = 4, progress = false }.images))
    h.rmdir(dir)
  end)
end)

describe('label net descriptions', function()
  it('rebuild the same architecture and refuse unknown layers', function()
    local nn = ddpm.nn
    local L = P.label_net
    local net = nn.Sequential(nn.Linear(5, 8), nn.SiLU(), nn.Dropout(0.1), nn.LayerNorm(8), nn.Linear(8, 8, false),
      nn.Unsqueeze(1))
    local d = L.describe(net)
    local copy = L.build(d)
    assert.are.equal(tostring(net), tostring(copy))
    assert.are.equal(5, L.input_width(copy))
    local ok, e = pcall(L.build, { layers = { { type = 'Conv9d' } } })
    assert.is_false(ok)
    assert.matches("unknown type 'Conv9d'", tostring(e))
  end)
end)
