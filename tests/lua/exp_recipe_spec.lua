-- exp_recipe_spec.lua: the follow-up recipe (train_better_conditional.lua: the label net frozen and
-- labels masked after --warmup, exactly resumable across that switch) and the options beyond the
-- tutorial (class-balanced sampling, AdamW, v-prediction, zero-terminal-SNR betas with trailing
-- spacing, Min-SNR weighting of v-prediction, EMA with the recipe).
local ddpm = require 'ddpm'
local h = require 'e2e_helpers'
local training = require 'ddpm.training'
local components = training.components

local dir
setup(function()
  dir = h.tmpdir()
  h.write_data(dir, { n = 24, classes = 5 })
end)
teardown(function() h.rmdir(dir) end)

local function data_words() return { '--data', dir .. '/images.npy', '--labels', dir .. '/labels.npy' } end
local UNET = 'checkpoint/unet/diffusion_pytorch_model.safetensors'
local NET = 'checkpoint/class_net.safetensors'

local function better(out, ...)
  local r = h.script('train_better_conditional.lua', h.words(data_words(), h.TINY, h.TINY_COND, '--no-samples',
    '--lr', '1e-2', '--out', out, ...))
  assert.are.equal(0, r.status, r.stderr)
  return r
end

describe('train_better_conditional.lua', function()
  it('is the recipe: three levels by default, DDIM(1000), AdamW 1e-4/1e-4, L1, balanced, 10 DDIM steps', function()
    local r = h.script('train_better_conditional.lua', { '--help' })
    assert.are.equal(0, r.status)
    for _, p in ipairs({ '%-%-channels C %[C %.%.%.%].-default: 64 128 256', '%-%-scheduler.-default: ddim',
      '%-%-timesteps.-default: 1000', '%-%-optimizer.-default: adamw', '%-%-weight%-decay.-default: 0%.0001',
      '%-%-loss.-default: l1', '%-%-balance.-default: true', '%-%-sample%-steps.-default: 10', '%-%-mask%-prob.-default: 0%.05',
      '%-%-dropout.-default: 0%.2', '%-%-label%-hidden.-default: 32' }) do
      assert.matches(p, r.stdout)
    end
  end)

  it('freezes the label net after --warmup epochs and masks labels from then on', function()
    local a, b = dir .. '/freeze_a', dir .. '/freeze_b'
    local ra = better(a, '--epochs', '2', '--warmup', '1', '--mask-prob', '0.5')
    assert.matches('recipe: 8/16, l1 loss, class%-balanced sampling', ra.stdout)
    assert.matches('DDIMScheduler%(num_train_timesteps=10%)', ra.stdout)
    assert.matches('AdamW %(weight decay 0%.0001%) lr 0%.01', ra.stdout)
    assert.matches('epoch 1: label net frozen; labels masked with probability 0%.5', ra.stdout)
    -- the same run stopped after the warm-up epoch: its label net is the final one
    better(b, '--epochs', '2', '--warmup', '1', '--mask-prob', '0.5', '--max-steps', '3')
    assert.are.equal(h.read(b .. '/' .. NET), h.read(a .. '/' .. NET))
    assert.are_not.equal(h.read(b .. '/' .. UNET), h.read(a .. '/' .. UNET))
    -- without the freeze (warm-up past the end) the label net keeps training
    local c = dir .. '/freeze_c'
    better(c, '--epochs', '2', '--warmup', '5', '--mask-prob', '0.5')
    assert.are_not.equal(h.read(b .. '/' .. NET), h.read(c .. '/' .. NET))
  end)

  it('resumes bit for bit across the switch from warm-up to masking', function()
    local straight, split = dir .. '/straight', dir .. '/split'
    better(straight, '--epochs', '3', '--warmup', '1', '--mask-prob', '0.5')
    better(split, '--epochs', '3', '--warmup', '1', '--mask-prob', '0.5', '--max-steps', '4')
    local r = h.script('train_better_conditional.lua', { '--resume', split, '--max-steps', '0', '--no-samples' })
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('label net frozen', r.stdout)
    assert.are.equal(h.read(straight .. '/' .. UNET), h.read(split .. '/' .. UNET))
    assert.are.equal(h.read(straight .. '/' .. NET), h.read(split .. '/' .. NET))
  end)

  it('keeps an EMA with the frozen label net (--ema): the pipeline holds the averages', function()
    local out = dir .. '/ema'
    better(out, '--epochs', '2', '--warmup', '1', '--ema', '--ema-decay', '0.9')
    local state = ddpm.load(out .. '/checkpoint/training_state.safetensors')
    local unet = ddpm.load_safetensors(out .. '/' .. UNET)
    local name = 'conv_in.weight'
    assert.is_false(ddpm.equal(unet[name], state.raw.unet[name]))
    -- a parameter that does not require grad is copied, not averaged (diffusers' EMAModel.step):
    -- the frozen label net's average is its final weights
    local avg = ddpm.load_safetensors(out .. '/' .. NET)
    assert.is_true(ddpm.equal(avg['0.weight'], state.raw.class_net['0.weight']))
    assert.is_not_nil(ddpm.pipelines.load(out))
  end)
end)

-- a Trainer built in-process from the shared options (as a script does)
local function trainer(words, loss)
  local argv = h.argv('train.lua', data_words(), h.TINY, h.TINY_COND, '--no-samples', '--out', dir .. '/t' ..
    tostring(math.random(1e9)), words)
  local args = training.options.parse(argv, { kind = 'conditional' })
  local data = training.data.load(args)
  local unet, net = h.tiny_conditional(0)
  return training.Trainer{ unet = unet, class_net = net, scheduler = components.noise_scheduler(args), data = data,
    args = args, loss = loss, print = function() end }, args
end

describe('options beyond the tutorial', function()
  it('--balance draws every class about equally often (the recipe\'s default)', function()
    -- a skewed set: 20 images of class 0, one each of classes 1..4
    local skew = h.tmpdir()
    h.write_data(skew, { n = 24, classes = 5 })
    local lab = ddpm.io.load_npy(skew .. '/labels.npy')
    lab:narrow(0, 0, 20):zero_():select(1, 0):fill_(1)
    for c = 1, 4 do lab:select(0, 19 + c):zero_():select(0, c):fill_(1) end
    ddpm.io.save_npy(skew .. '/labels.npy', lab)
    local args = training.options.parse(h.argv('t.lua', '--data', skew .. '/images.npy', '--labels', skew .. '/labels.npy',
      '--balance', '--out', skew .. '/o'), { kind = 'conditional' })
    local data = training.data.load(args)
    local unet, net = h.tiny_conditional(0)
    local t = training.Trainer{ unet = unet, class_net = net, scheduler = components.noise_scheduler(args), data = data,
      args = args, print = function() end }
    local parts = {}
    for k = 1, 40 do parts[k] = t.loader.sampler:indices(ddpm.Generator():manual_seed(k)) end
    local ids = data.labels:argmax(1):index_select(0, ddpm.cat(parts, 0))
    local counts = ddpm.zeros(5, { dtype = ddpm.float64 }):index_add_(0, ids, ddpm.ones(ids:numel(), { dtype = ddpm.float64 }))
    local share = (counts / ids:numel()):tolist()
    for c = 1, 5 do assert.is_true(math.abs(share[c] - 0.2) < 0.05, 'class ' .. (c - 1) .. ' share ' .. share[c]) end
    h.rmdir(skew)
  end)

  it('--optimizer adamw --weight-decay', function()
    local t = trainer({ '--optimizer', 'adamw', '--weight-decay', '0.001' })
    assert.are.equal('AdamW', t.optimizer.name)
    assert.are.equal(0.001, t.optimizer.param_groups[1].weight_decay)
    assert.are.equal('Adam', trainer({}).optimizer.name)
  end)

  it('--prediction-type v_prediction: the target is scheduler:get_velocity', function()
    local seen
    local t = trainer({ '--prediction-type', 'v_prediction' }, function(pred, target, batch)
      seen = { target = target, batch = batch }
      return ddpm.nn.functional.mse_loss(pred, target)
    end)
    assert.are.equal('v_prediction', t.scheduler.config.prediction_type)
    local images, labels = t.loader:iter()()
    t:compute_loss(images, labels)
    local v = t.scheduler:get_velocity(images, seen.batch.noise, seen.batch.timesteps)
    assert.is_true(ddpm.equal(v, seen.target))
    assert.is_false(ddpm.equal(seen.batch.noise, seen.target))
  end)

  it('--snr-gamma with v-prediction weighs by min(SNR, gamma) / (SNR + 1)', function()
    local s = components.noise_scheduler(setmetatable({ timesteps = 10, prediction_type = 'v_prediction' }, {}))
    local f = training.losses.min_snr(s, 2)
    local g = ddpm.Generator():manual_seed(3)
    local pred, target = ddpm.randn({ 4, 3, 2, 2 }, { generator = g }), ddpm.randn({ 4, 3, 2, 2 }, { generator = g })
    local ts = ddpm.tensor({ 0, 3, 6, 9 }, { dtype = ddpm.int64 })
    local want = 0
    for i = 0, 3 do
      local a = s.alphas_cumprod:select(0, ts:select(0, i):item()):item()
      local snr = a / (1 - a)
      local mse = (pred:select(0, i) - target:select(0, i)):square():mean():item()
      want = want + mse * math.min(snr, 2) / (snr + 1) / 4
    end
    local got = f(pred, target, { timesteps = ts }):item()
    assert.is_true(math.abs(got - want) < 1e-5 * want, got .. ' vs ' .. want)
  end)

  it('--zero-snr: zero terminal SNR, trailing spacing, and v-prediction samples end to end', function()
    local args = setmetatable({ timesteps = 20, prediction_type = 'v_prediction', zero_snr = true, scheduler = 'ddpm' }, {})
    local s = components.noise_scheduler(args)
    assert.is_true(s.config.rescale_betas_zero_snr)
    assert.are.equal('trailing', s.config.timestep_spacing)
    assert.is_true(s.alphas_cumprod:select(0, 19):item() < 1e-6)
    local ddim = components.sampling_scheduler('ddim', s)
    ddim:set_timesteps(4)
    assert.are.equal(19, ddim:timestep_list()[1]) -- sampling starts from pure noise
    local out = dir .. '/zsnr'
    local r = h.script('train_conditional.lua', h.words(data_words(), h.TINY, h.TINY_COND, '--epochs', '1', '--zero-snr',
      '--prediction-type', 'v_prediction', '--snr-gamma', '5', '--out', out))
    assert.are.equal(0, r.status, r.stderr)
    local cfg = ddpm.io.json.read(out .. '/checkpoint/scheduler/scheduler_config.json')
    assert.is_true(cfg.rescale_betas_zero_snr)
    assert.are.equal('v_prediction', cfg.prediction_type)
    local pipe = ddpm.pipelines.load(out, { scheduler = 'ddim' })
    local imgs = pipe({ 0, 1 }, { generator = 0, num_inference_steps = 3, progress = false }).images
    assert.is_true(imgs:isfinite():all())
  end)
end)
