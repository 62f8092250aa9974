-- exp_swaps_spec.lua: swapping parts without recompiling: a NEW scheduler class and a NEW label net
-- (an Embedding table) written into temporary Lua files run training and sampling end to end
-- (train_conditional.lua, sample.lua, train_unconditional.lua, train_better_conditional.lua); the
-- checkpoint keeps copies of both files, so it loads and resumes without the originals; built-in
-- scheduler names work too.
local ddpm = require 'ddpm'
local h = require 'e2e_helpers'

local dir
setup(function()
  dir = h.tmpdir()
  h.write_data(dir, { n = 24, classes = 5 })
end)
teardown(function() h.rmdir(dir) end)

-- a scheduler class of its own: deterministic DDIM written from scratch on the base plumbing
local SCHEDULER = [[
local B = require 'ddpm.schedulers.base'
local Toy = B.class({ name = 'ToyDDIMScheduler', config_spec = {
  { 'num_train_timesteps', 1000, 'int' }, { 'beta_start', 0.0001, 'float' }, { 'beta_end', 0.02, 'float' },
  { 'beta_schedule', 'squaredcos_cap_v2', 'str' }, { 'trained_betas', nil, 'list' }, { 'prediction_type', 'epsilon', 'str' },
  { 'rescale_betas_zero_snr', false, 'bool' }, { 'timestep_spacing', 'trailing', 'str' }, { 'steps_offset', 0, 'int' },
} })
function Toy:init()
  self.betas = B.make_betas(Toy, self.config)
  self.alphas_cumprod = B.cumprod32(1 - self.betas)
  self.init_noise_sigma = 1
end
function Toy:set_timesteps(n)
  self.num_inference_steps = n
  self._tlist = B.spaced_timesteps(self.config, n)
  self.timesteps = ddpm.tensor(self._tlist, { dtype = ddpm.int64 })
end
function Toy:scale_model_input(x) return x end
function Toy:step(eps, t, x)
  local T = self.config.num_train_timesteps
  local a = self.alphas_cumprod:select(0, t):item()
  local prev = t - math.floor(T / self.num_inference_steps)
  local ap = prev >= 0 and self.alphas_cumprod:select(0, prev):item() or 1
  local x0 = (x - eps * math.sqrt(1 - a)) / math.sqrt(a)
  return { prev_sample = x0 * math.sqrt(ap) + eps * math.sqrt(1 - ap), pred_original_sample = x0 }
end
return function(config) return Toy.from_config(config) end
]]

-- a label net of another kind: an Embedding table, row 0 for the all-zero ("no label") input
local LABEL_NET = [[
local nn = ddpm.nn
return function(width, dim)
  local Net = nn.class('EmbeddingLabelNet')
  function Net:__init()
    nn.Module.__init(self)
    self.table = nn.Embedding(width + 1, dim)
  end
  function Net:forward(labels)
    local any = labels:amax(1):gt(ddpm.full({}, 0)):long()
    return self.table((labels:argmax(1) + 1) * any):unsqueeze(1)
  end
  return Net()
end
]]

local function write_files(tag)
  local s, n = dir .. '/toy_scheduler_' .. tag .. '.lua', dir .. '/embedding_net_' .. tag .. '.lua'
  h.write(s, SCHEDULER)
  h.write(n, LABEL_NET)
  return s, n
end

local function data_words()
  return { '--data', dir .. '/images.npy', '--labels', dir .. '/labels.npy' }
end

describe('--scheduler FILE.lua and --label-net FILE.lua', function()
  it('train, checkpoint and sample end to end, and the checkpoint needs neither file afterwards', function()
    local sched, net = write_files('a')
    local out = dir .. '/run_a'
    local r = h.script('train_conditional.lua', h.words(data_words(), h.TINY, h.TINY_COND, '--epochs', '2', '--scheduler',
      sched, '--label-net', net, '--sample-scheduler', sched, '--out', out))
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('ToyDDIMScheduler%(num_train_timesteps=10%)', r.stdout)
    assert.is_true(h.exists(out .. '/samples.png'))
    local c = out .. '/checkpoint/'
    assert.are.equal(LABEL_NET, h.read(c .. 'class_net.lua'))
    assert.are.equal(SCHEDULER, h.read(c .. 'scheduler/scheduler.lua'))
    local desc = ddpm.io.json.read(c .. 'class_net.json')
    assert.are.equal('LuaModule', desc._class_name)
    assert.are.same({ 5, 8 }, desc.args)
    assert.are.equal(5, desc.num_classes)
    -- the Embedding table's weights are the state dict (PyTorch names)
    local sd = ddpm.load_safetensors(c .. 'class_net.safetensors')
    assert.are.same({ 6, 8 }, sd['table.weight']:shape())

    os.remove(sched)
    os.remove(net)
    local pipe = ddpm.pipelines.load(out)
    assert.are.equal('ToyDDIMScheduler', pipe.scheduler.name)
    assert.are.equal('EmbeddingLabelNet', require('ddpm.class').typename(pipe.class_net))
    assert.are.equal(5, pipe.num_classes)
    local imgs = pipe({ 0, 4, 2 }, { generator = 1, num_inference_steps = 3, guidance_scale = 2, progress = false }).images
    assert.are.same({ 3, 3, 8, 8 }, imgs:shape())
    assert.is_true(imgs:isfinite():all())
    local again = pipe({ 0, 4, 2 }, { generator = 1, num_inference_steps = 3, guidance_scale = 2, progress = false }).images
    assert.is_true(ddpm.equal(imgs, again))

    -- sample.lua with the saved scheduler, and with a new scheduler file at sampling time
    local png = dir .. '/a.png'
    local s = h.script('sample.lua', { '--checkpoint', out, '--steps', '3', '--out', png, '--no-progress', '--per-class', '2' })
    assert.are.equal(0, s.status, s.stderr)
    assert.matches('ToyDDIMScheduler, 3 steps', s.stdout)
    local sched2 = write_files('b')
    s = h.script('sample.lua', { '--checkpoint', out, '--scheduler', sched2, '--steps', '2', '--guidance', '3', '--out', png,
      '--no-progress' })
    assert.are.equal(0, s.status, s.stderr)
    assert.matches('ToyDDIMScheduler, 2 steps, guidance 3', s.stdout)
    s = h.script('sample.lua', { '--checkpoint', out, '--scheduler', 'dpm', '--steps', '2', '--out', png, '--no-progress' })
    assert.are.equal(0, s.status, s.stderr)
    assert.matches('DPMSolverMultistepScheduler, 2 steps', s.stdout)
  end)

  it('a resumed run uses the checkpoint\'s copies, not the (changed) files', function()
    local sched, net = write_files('c')
    local out = dir .. '/run_c'
    local base = h.words(data_words(), h.TINY, h.TINY_COND, '--epochs', '2', '--scheduler', sched, '--label-net', net,
      '--no-samples')
    local r = h.script('train_conditional.lua', h.words(base, '--out', out, '--max-steps', '3'))
    assert.are.equal(0, r.status, r.stderr)
    h.write(net, 'error("this file changed after the run started")')
    h.write(sched, 'return 42')
    r = h.script('train_conditional.lua', { '--resume', out, '--max-steps', '0' })
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('resuming from .* at step 3', r.stdout)
    assert.matches('checkpoint: .*%(step 6%)', r.stdout)
    -- bit for bit the same as straight through
    local straight = dir .. '/run_c2'
    local sched2, net2 = write_files('c2')
    r = h.script('train_conditional.lua', h.words(data_words(), h.TINY, h.TINY_COND, '--epochs', '2', '--scheduler', sched2,
      '--label-net', net2, '--no-samples', '--out', straight))
    assert.are.equal(0, r.status, r.stderr)
    local w = 'checkpoint/unet/diffusion_pytorch_model.safetensors'
    assert.are.equal(h.read(straight .. '/' .. w), h.read(out .. '/' .. w))
    assert.are.equal(h.read(straight .. '/checkpoint/class_net.safetensors'), h.read(out .. '/checkpoint/class_net.safetensors'))
  end)

  it('the follow-up recipe and the unconditional script take them too; built-in names work', function()
    local sched, net = write_files('d')
    local r = h.script('train_better_conditional.lua', h.words(data_words(), h.TINY, h.TINY_COND, '--epochs', '2', '--warmup',
      '1', '--scheduler', sched, '--label-net', net, '--out', dir .. '/run_d'))
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('ToyDDIMScheduler', r.stdout)
    assert.matches('label net frozen', r.stdout)
    r = h.script('train_unconditional.lua', h.words('--data', dir .. '/images.npy', h.TINY, h.TINY_UNCOND, '--epochs', '1',
      '--scheduler', sched, '--out', dir .. '/run_e'))
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('ToyDDIMScheduler', r.stdout)
    assert.are.equal('ToyDDIMScheduler', ddpm.pipelines.load(dir .. '/run_e').scheduler.name)
    r = h.script('train_conditional.lua', h.words(data_words(), h.TINY, h.TINY_COND, '--epochs', '1', '--scheduler', 'dpm',
      '--no-samples', '--out', dir .. '/run_f'))
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('DPMSolverMultistepScheduler%(num_train_timesteps=10%)', r.stdout)
  end)

  it('the example files in scripts/experiments/examples pass the checks', function()
    local components = require 'ddpm.training.components'
    local ex = h.source .. '/scripts/experiments/examples/'
    local args = setmetatable({ embed_dim = 8 }, {})
    for name, shape in pairs({ embedding_label_net = { 3, 1, 8 }, deep_mlp_label_net = { 3, 2, 8 } }) do
      rawset(args, 'label_net', ex .. name .. '.lua')
      local m = components.label_net(args, 5, function() error('the default must not be built') end)
      assert.are.same(shape, m(ddpm.eye(5):narrow(0, 0, 3)):shape(), name)
      -- the checkpoint's description rebuilds the same architecture
      local copy = ddpm.pipelines.label_net.build(ddpm.pipelines.label_net.describe(m))
      copy:load_state_dict(m:state_dict(), { strict = true })
      m:eval()
      copy:eval()
      assert.is_true(ddpm.equal(copy(ddpm.eye(5)), m(ddpm.eye(5))), name)
    end
    local s = components.scheduler_by_name(ex .. 'cosine_ddim.lua', { num_train_timesteps = 50 })
    assert.are.equal('DDIMScheduler', s.name)
    assert.are.equal('squaredcos_cap_v2', s.config.beta_schedule)
  end)

  it('a label-net file may return a module directly; the file\'s globals stay in the file', function()
    local path = dir .. '/plain_net.lua'
    h.write(path, 'helper_global = 1\nreturn ddpm.nn.Sequential(ddpm.nn.Linear(5, 8), ddpm.nn.SiLU(), ddpm.nn.Linear(8, 8), '
      .. 'ddpm.nn.Unsqueeze(1))\n')
    local components = require 'ddpm.training.components'
    local args = setmetatable({ label_net = path, embed_dim = 8 }, {})
    local m = components.label_net(args, 5, function() error('the default must not be built') end)
    assert.are.same({ 3, 1, 8 }, m(ddpm.zeros(3, 5)):shape())
    assert.is_nil(rawget(_G, 'helper_global'))
    local s = components.scheduler_by_name('ddim', { num_train_timesteps = 20, prediction_type = 'v_prediction' })
    assert.are.equal('v_prediction', s.config.prediction_type)
  end)
end)
