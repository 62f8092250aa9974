-- cuda_graphs_spec.lua: CUDA graphs in the trainer and the sampling pipelines (ddpm.utils.cuda_graphs),
-- and --mixed-precision.  Without a GPU the graph logic (which calls run eagerly, what a capture
-- keys on, static inputs, copies of outputs, the fallback after a failed capture) runs against a host
-- emulation of capture and replay and must give results identical to eager training and sampling;
-- on a GPU the same comparisons run with real graphs.
local ddpm = require 'ddpm'
local h = require 'e2e_helpers'
local training = require 'ddpm.training'
local graphs = require 'ddpm.utils.cuda_graphs'

local real_capture = graphs.capture
local gpu = ddpm.cuda.is_available()

-- capture and replay emulated on the host: "capture" runs fn once and then puts the generators
-- back (a real capture runs nothing and draws nothing); replay runs fn again and writes its result
-- into the tensor the capture returned, as a replayed graph overwrites its output in place
local function emulated(generators)
  local n = { captures = 0, replays = 0 }
  local function capture(fn)
    n.captures = n.captures + 1
    local states = {}
    for i, g in ipairs(generators()) do states[i] = g:get_state() end
    local out = fn():detach()
    for i, g in ipairs(generators()) do g:set_state(states[i]) end
    local g = { reset = function() end }
    function g.replay()
      n.replays = n.replays + 1
      out:copy_(fn():detach())
    end
    return g, out
  end
  return capture, n
end

local data_dir
setup(function()
  data_dir = h.tmpdir()
  h.write_data(data_dir, { n = 22, classes = 5 })
end)
teardown(function()
  h.rmdir(data_dir)
  graphs.capture, graphs.force = real_capture, nil
end)

local function make(words, device)
  local argv = h.argv('train.lua', '--data', data_dir .. '/images.npy', '--labels', data_dir .. '/labels.npy', h.TINY,
    h.TINY_COND, '--label-dropout', '0.25', '--ema', '--lr', '3e-3', '--batch-size', '5', '--epochs', '2',
    '--no-samples', '--save-every', '0', '--device', device or 'cpu', words or {})
  local args = training.options.parse(argv, { kind = 'conditional' })
  local data = training.data.load(args, { conditional = true })
  local unet, net = h.tiny_conditional(0)
  return training.Trainer{ unet = unet, class_net = net, scheduler = ddpm.schedulers.DDPMScheduler{ num_train_timesteps = 10 },
    data = data, args = args, print = function() end }
end

local function run_steps(t, n, on_epoch)
  t.on_epoch = on_epoch
  local losses = {}
  for epoch = 0, 1 do
    if on_epoch then on_epoch(t, epoch) end
    for images, labels in t.loader:iter() do
      losses[#losses + 1] = t:train_step(images, labels)
      if #losses == n then return losses end
    end
  end
  return losses
end

local function assert_same(a, b, la, lb, tol)
  if tol then
    for i = 1, #la do assert.is_true(math.abs(la[i] - lb[i]) <= tol * (1 + math.abs(la[i])), 'loss ' .. i) end
    for i, p in ipairs(a.params) do ddpm.testing.assert_close(p:cpu(), b.params[i]:cpu(), { rtol = tol, atol = tol }) end
    return
  end
  assert.are.same(la, lb)
  for i, p in ipairs(a.params) do assert.is_true(ddpm.equal(p, b.params[i]), 'parameter ' .. i .. ' differs') end
  for i, s in ipairs(a.ema.model.shadow_params) do assert.is_true(ddpm.equal(s, b.ema.model.shadow_params[i]), 'EMA ' .. i) end
  assert.are.same(a.committed.generator, b.committed.generator)
end

-- label dropout rises after the first epoch and the label net freezes: both change what a graph records
local function warmup_hook(t, epoch)
  t.label_dropout = epoch == 0 and 0 or 0.25
  for _, p in ipairs(t.class_net:parameters()) do p.requires_grad = epoch == 0 end
end

describe('the trainer with CUDA graphs (host emulation)', function()
  after_each(function() graphs.capture, graphs.force = real_capture, nil end)

  it('trains exactly as eagerly: graphs for full batches only, recaptured when the step changes', function()
    local eager = make()
    assert.is_nil(eager.graphs) -- on the CPU graphs are off
    local le = run_steps(eager, 10, warmup_hook)
    graphs.force = true
    local t = make()
    local counts
    graphs.capture, counts = emulated(function() return { t.generator, ddpm.default_generator } end)
    assert.is_truthy(t.graphs)
    local lg = run_steps(t, 10, warmup_hook)
    assert_same(eager, t, le, lg)
    -- 22 images in batches of 5: per epoch four full batches and one of 2 (always eager).  Each
    -- epoch (a new key in epoch 1): eager, capture + replay, replay, replay
    assert.are.equal(2, counts.captures)
    assert.are.equal(6, counts.replays)
  end)

  it('falls back to eager steps, with one warning, when a capture fails', function()
    local eager = make()
    local le = run_steps(eager, 4)
    graphs.force = true
    graphs.capture = function() error('operation not permitted when stream is capturing') end
    local t = make()
    local err = {}
    local stderr = io.stderr
    io.stderr = { write = function(_, s) err[#err + 1] = s end } -- luacheck: ignore
    local ok, lg = pcall(run_steps, t, 4)
    io.stderr = stderr -- luacheck: ignore
    assert.is_true(ok, tostring(lg))
    assert_same(eager, t, le, lg)
    assert.are.equal(1, #err)
    assert.matches('training: CUDA graph capture failed, running eagerly: .*stream is capturing', err[1])
  end)
end)

describe('sampling with CUDA graphs (host emulation)', function()
  after_each(function() graphs.capture, graphs.force = real_capture, nil end)

  local function pipe(sched)
    local unet, net = h.tiny_conditional(3)
    return ddpm.pipelines.ConditionalDDPMPipeline(unet, net, sched)
  end
  for _, case in ipairs({ { 'DDPM', 'DDPMScheduler' }, { 'DPM-Solver++ (keeps earlier outputs)', 'DPMSolverMultistepScheduler' } }) do
    it('gives the eager images, ' .. case[1] .. ', guided', function()
      local p = pipe(ddpm.schedulers[case[2]]{ num_train_timesteps = 20 })
      local o = { generator = 5, num_inference_steps = 6, guidance_scale = 2, progress = false }
      local eager = p({ 0, 1, 2, 4 }, o).images
      graphs.force = true
      local counts
      graphs.capture, counts = emulated(function() return {} end)
      local g = p({ 0, 1, 2, 4 }, o).images
      assert.is_true(ddpm.equal(eager, g))
      assert.are.equal(1, counts.captures)
      assert.are.equal(5, counts.replays) -- step 1 eager, then capture + 5 replays
      -- cuda_graph = false: eager whatever the device
      counts.captures = 0
      assert.is_true(ddpm.equal(eager, p({ 0, 1, 2, 4 }, { generator = 5, num_inference_steps = 6, guidance_scale = 2,
        progress = false, cuda_graph = false }).images))
      assert.are.equal(0, counts.captures)
    end)
  end

  it('refuses a cuda_graph option that is not a boolean', function()
    local p = pipe(ddpm.schedulers.DDPMScheduler{ num_train_timesteps = 20 })
    assert.has_error(function() p({ 0 }, { num_inference_steps = 2, progress = false, cuda_graph = 'yes' }) end,
      'cuda_graph must be true, false or nil (automatic), got yes')
  end)
end)

describe('--mixed-precision', function()
  it('bf16 trains under CPU autocast with float32 master weights', function()
    local t = make({ '--mixed-precision', 'bf16', '--no-ema' })
    local l = run_steps(t, 2)
    assert.are.equal(2, #l)
    for _, v in ipairs(l) do assert.is_true(v == v and v > 0 and v < 10, tostring(v)) end
    for _, p in ipairs(t.params) do assert.are.equal(ddpm.float32, p.dtype) end
    assert.matches('mixed precision bf16', t:summary())
  end)
  it('fp16 needs CUDA; an unknown precision is named', function()
    assert.has_error(function() make({ '--mixed-precision', 'fp16' }) end,
      '--mixed-precision fp16 needs --device cuda (the CPU autocast type is bf16: use --mixed-precision bf16)')
    local ok, e = pcall(make, { '--mixed-precision', 'fp8' })
    assert.is_false(ok)
    assert.matches("mixed.precision", tostring(type(e) == 'table' and e.message or e))
  end)
end)

describe('real CUDA graphs', function()
  it('train and sample as eagerly, within float tolerance', function()
    if not gpu then
      pending('needs a CUDA GPU: graphs captured and replayed on the device')
      return
    end
    local eager = make({ '--no-cuda-graphs' }, 'cuda')
    local le = run_steps(eager, 8, warmup_hook)
    local t = make({}, 'cuda')
    assert.is_truthy(t.graphs)
    local lg = run_steps(t, 8, warmup_hook)
    assert_same(eager, t, le, lg, 1e-4)
    local p = t:pipeline(ddpm.schedulers.DDIMScheduler{ num_train_timesteps = 10 })
    local o = { generator = 1, num_inference_steps = 5, guidance_scale = 2, progress = false }
    local a = p({ 0, 1, 2, 3, 4 }, o).images
    o.cuda_graph = false
    local b = p({ 0, 1, 2, 3, 4 }, o).images
    ddpm.testing.assert_close(a:cpu(), b:cpu(), { rtol = 1e-4, atol = 1e-5 })
  end)
end)
