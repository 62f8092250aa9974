-- e2e_train_spec.lua: the shared training module in-process: train -> checkpoint -> load the
-- pipeline -> sample; exact resumption (N steps straight == N/2 + resume + N/2, bit for bit);
-- Ctrl-C at every phase of a step; atomic checkpoint swaps; the per-step log.
local ddpm = require 'ddpm'
local h = require 'e2e_helpers'
local training = require 'ddpm.training'
local options = training.options

local data_dir
setup(function()
  data_dir = h.tmpdir()
  h.write_data(data_dir, { n = 24, classes = 5 })
end)
teardown(function() h.rmdir(data_dir) end)

local EXTRA_COND = { '--label-dropout', '0.25', '--balance' }
-- the runs compared bit for bit also keep an EMA and use the Min-SNR loss: both must resume exactly
local EMA = { '--ema', '--snr-gamma', '5' }
local EXTRA = { '--flip', '--lr', '3e-3', '--lr-schedule', 'cosine', '--warmup-steps', '2',
  '--epochs', '3', '--save-every', '0', '--no-samples' }

-- parse options as the script does and build the tiny models; seed differs per trainer on purpose:
-- a resumed trainer must take everything from the checkpoint
local function make(out, words, opts)
  opts = opts or {}
  local uncond = opts.kind == 'unconditional'
  local argv = h.argv('train.lua', '--data', data_dir .. '/images.npy',
    uncond and {} or { '--labels', data_dir .. '/labels.npy' }, h.TINY, uncond and h.TINY_UNCOND or h.TINY_COND, EXTRA, uncond and {} or EXTRA_COND,
    '--out', out, words or {})
  local args = options.parse(argv, { kind = opts.kind or 'conditional' })
  local data = training.data.load(args, { conditional = opts.kind ~= 'unconditional' })
  local t
  if opts.kind == 'unconditional' then
    t = training.Trainer{ unet = h.tiny_unconditional(opts.seed or 0), scheduler = ddpm.schedulers.DDPMScheduler{
      num_train_timesteps = 10 }, data = data, args = args, print = function() end }
  else
    local unet, net = h.tiny_conditional(opts.seed or 0)
    t = training.Trainer{ unet = unet, class_net = net, scheduler = ddpm.schedulers.DDPMScheduler{ num_train_timesteps = 10 },
      data = data, args = args, print = function() end }
  end
  if args.resume_dir then t:resume(args.resume_dir, args.resume_state) end
  return t
end

local function assert_same_training(a, b)
  assert.are.equal(a.ema ~= nil, b.ema ~= nil)
  if a.ema then
    assert.are.equal(a.ema.model.optimization_step, b.ema.model.optimization_step)
    for i, s in ipairs(a.ema.model.shadow_params) do
      assert.is_true(ddpm.equal(s, b.ema.model.shadow_params[i]), 'EMA weight ' .. i .. ' differs')
    end
  end
  for i, p in ipairs(a.params) do
    assert.is_true(ddpm.equal(p, b.params[i]), 'parameter ' .. i .. ' differs')
    local sa, sb = a.optimizer.state[p], b.optimizer.state[b.params[i]]
    assert.are.equal(sa.step, sb.step)
    assert.is_true(ddpm.equal(sa.exp_avg, sb.exp_avg) and ddpm.equal(sa.exp_avg_sq, sb.exp_avg_sq), 'Adam state ' .. i)
  end
  assert.are.same(a.committed.loader, b.committed.loader)
  assert.are.same(a.committed.generator, b.committed.generator)
  assert.are.equal(a.committed.step, b.committed.step)
  assert.are.equal(a.committed.loss_sum, b.committed.loss_sum)
  assert.are.equal(a.optimizer.param_groups[1].lr, b.optimizer.param_groups[1].lr)
end

local function interrupted(t)
  local ok, e = pcall(t.fit, t)
  assert.is_false(ok)
  assert.are.equal('table', type(e), tostring(e))
  assert.are.equal(130, e.exit_code)
  assert.matches('checkpoint saved to', e.message)
  return e
end

-- the uninterrupted 5-step run every resumed run is compared with (made once)
local straight
local function straight_run()
  if not straight then
    local out = h.tmpdir()
    straight = make(out, { '--max-steps', '5', EMA })
    straight:fit()
    straight.dir = out
  end
  return straight
end
teardown(function() if straight then h.rmdir(straight.dir) end end)

describe('training', function()
  it('trains, checkpoints in the diffusers layout, and the loaded pipeline samples a labelled grid', function()
    local out = h.tmpdir()
    local t = make(out, { '--epochs', '2' })
    local c = t:fit()
    assert.are.equal(6, c.step) -- 2 epochs x 3 batches
    local ck = out .. '/checkpoint/'
    for _, f in ipairs({ 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'scheduler/scheduler_config.json',
      'class_net.safetensors', 'class_net.json', 'model_index.json', 'training_state.safetensors' }) do
      assert.is_true(h.exists(ck .. f), f)
    end
    -- the label net's state dict keeps PyTorch's names, so torch's load_state_dict reads it
    local sd = ddpm.load_safetensors(ck .. 'class_net.safetensors')
    assert.is_not_nil(sd['0.weight'])
    assert.is_not_nil(sd['2.bias'])
    local log = h.read(out .. '/train_log.csv')
    local lines = {}
    for l in log:gmatch('[^\n]+') do lines[#lines + 1] = l end
    assert.are.equal('step,epoch,loss,lr,images_per_s', lines[1])
    assert.are.equal(7, #lines)
    assert.matches('^6,1,', lines[7])
    local pipe = ddpm.pipelines.load(out)
    local trained = {}
    for name, p in t.unet:named_parameters() do trained[name] = p end
    for name, p in pipe.unet:named_parameters() do
      assert.is_true(ddpm.equal(p, trained[name]), name)
    end
    assert.are.same({ 'class 0', 'class 1', 'class 2', 'class 3', 'class 4' }, pipe.class_names)
    local png = out .. '/grid.png'
    ddpm.pipelines.class_grid(pipe, { path = png, per_class = 2, num_inference_steps = 3, generator = 0, progress = false,
      scale = 2 })
    local w, ht = h.png_size(png)
    -- 5 rows of 2 images of 16 px (8 px x 2) with 2 px padding, plus the label column
    assert.are.equal(2 + 5 * 18, ht)
    assert.is_true(w > 2 + 2 * 18)
    h.rmdir(out)
  end)

  it('resumes bit for bit: N steps straight equal N/2, resume, N/2', function()
    local b_out = h.tmpdir()
    local a = straight_run()
    local a_out = a.dir
    local b = make(b_out, { '--max-steps', '2', EMA })
    b:fit()
    assert.are.equal(2, b.committed.step)
    local b2 = make(b_out, { '--resume', b_out, '--max-steps', '5' }, { seed = 9 })
    assert.are.equal(2, b2.committed.step)
    b2:fit()
    assert_same_training(a, b2)
    -- the pipeline on disk holds the averaged weights, not the raw ones
    local saved = ddpm.load_safetensors(b_out .. '/checkpoint/class_net.safetensors')
    assert.is_true(ddpm.equal(saved['0.weight'], b2.ema.model.shadow_params[#b2.unet:parameters() + 1]))
    assert.is_false(ddpm.equal(saved['0.weight'], b2.class_net:parameters()[1]))
    -- and the checkpoints on disk hold the same weights
    assert.are.equal(h.read(a_out .. '/checkpoint/unet/diffusion_pytorch_model.safetensors'),
      h.read(b_out .. '/checkpoint/unet/diffusion_pytorch_model.safetensors'))
    -- the log of the resumed run reads as one run
    local steps = {}
    for s in h.read(b_out .. '/train_log.csv'):gmatch('\n(%d+),') do steps[#steps + 1] = tonumber(s) end
    assert.are.same({ 1, 2, 3, 4, 5 }, steps)
    h.rmdir(b_out)
  end)

  it('resumes an unconditional run bit for bit', function()
    local a_out, b_out = h.tmpdir(), h.tmpdir()
    local o = { kind = 'unconditional' }
    local a = make(a_out, { '--max-steps', '4' }, o)
    a:fit()
    make(b_out, { '--max-steps', '3' }, o):fit()
    local b2 = make(b_out, { '--resume', b_out, '--max-steps', '4' }, { kind = 'unconditional', seed = 3 })
    b2:fit()
    assert_same_training(a, b2)
    h.rmdir(a_out)
    h.rmdir(b_out)
  end)

  -- Ctrl-C lands wherever the Lua code is; each case raises "interrupted!" at another point of step 3
  local cases = {
    { 'in the forward pass', 2, function(t)
      local orig = t.compute_loss
      t.compute_loss = function(self, ...)
        if self.committed.step == 2 then error('job.lua:1: interrupted!', 0) end
        return orig(self, ...)
      end
    end },
    { 'in the optimizer step before its update', 2, function(t)
      local orig = t.optimizer.update
      t.optimizer.update = function(self, ...)
        if t.committed.step == 2 then error('job.lua:1: interrupted!', 0) end
        return orig(self, ...)
      end
    end },
    { 'right after the fused update, before its bookkeeping', 3, function(t)
      local orig = t.optimizer.update
      t.optimizer.update = function(self, g, ps, gs, ss)
        if t.committed.step ~= 2 then return orig(self, g, ps, gs, ss) end
        -- what Adam:update does, stopped between the C call and the step counters
        local steps = {}
        for i = 1, #ps do steps[i] = (ss[i].step or 0) + 1 end
        orig(self, g, ps, gs, ss)
        for i = 1, math.floor(#ps / 2) do ss[i].step = steps[i] - 1 end
        error('job.lua:1: interrupted!', 0)
      end
    end },
    { 'while committing', 3, function(t)
      local orig = t._commit
      t._commit = function(self, l)
        if self.committed.step == 2 then
          self._commit = orig
          error('job.lua:1: interrupted!', 0)
        end
        return orig(self, l)
      end
    end },
    { 'after the step, while logging', 3, function(t)
      local done = false
      local orig = t.optimizer.step
      t.optimizer.step = function(self, ...)
        local r = orig(self, ...)
        if t.committed.step == 2 and not done then
          done = true
          local oc = t._commit
          t._commit = function(s, l)
            oc(s, l)
            t._commit = oc
            error('job.lua:1: interrupted!', 0)
          end
        end
        return r
      end
    end },
  }
  for _, case in ipairs(cases) do
    it('saves a consistent checkpoint on Ctrl-C ' .. case[1] .. ' and resumes exactly', function()
      local b_out = h.tmpdir()
      local a = straight_run()
      local b = make(b_out, { '--max-steps', '5', EMA })
      case[3](b)
      local e = interrupted(b)
      assert.matches('interrupted at step ' .. case[2], e.message)
      local state = training.checkpoint.read_state(b_out .. '/checkpoint')
      assert.are.equal(case[2], state.step)
      for _, st in pairs(state.optimizer.state) do assert.are.equal(case[2], st.step) end
      local b2 = make(b_out, { '--resume', b_out }, { seed = 5 })
      b2:fit()
      assert_same_training(a, b2)
      h.rmdir(b_out)
    end)
  end

  it('refuses a label net whose width does not match the labels', function()
    local out = h.tmpdir()
    local argv = h.argv('train_conditional.lua', '--data', data_dir .. '/images.npy', '--labels', data_dir .. '/labels.npy',
      h.TINY, h.TINY_COND, '--out', out)
    local args = options.parse(argv, { kind = 'conditional' })
    local data = training.data.load(args)
    local unet, net = h.tiny_conditional(0, 6)
    local ok, e = pcall(training.Trainer, { unet = unet, class_net = net, scheduler = ddpm.schedulers.DDPMScheduler{
      num_train_timesteps = 10 }, data = data, args = args })
    assert.is_false(ok)
    assert.matches('the labels have 5 columns %(classes%) but the label net takes 6', tostring(e))
    h.rmdir(out)
  end)
end)

describe('the training log', function()
  local L = training.metrics_log
  for _, ext in ipairs({ 'csv', 'jsonl' }) do
    it('writes ' .. ext .. ' rows and cuts them back to the checkpoint step on resume', function()
      local dir = h.tmpdir()
      local path = dir .. '/log.' .. ext
      local log = L.open(path)
      for step = 1, 5 do log:row({ step = step, epoch = 0, loss = 1 / step, lr = 1e-3, images_per_s = 100 + step }) end
      log:row({ step = 6, epoch = 1, loss = 0 / 0, lr = 1e-3 }) -- a NaN loss and no speed
      log:close()
      local text = h.read(path)
      if ext == 'csv' then
        assert.matches('^step,epoch,loss,lr,images_per_s\n1,0,1,0%.001,101\n2,0,0%.5,', text)
        assert.matches('\n6,1,nan,0%.001,\n$', text)
      else
        local first = ddpm.io.json.decode(text:match('^[^\n]+'))
        assert.are.same({ step = 1, epoch = 0, loss = 1, lr = 0.001, images_per_s = 101 }, first)
        assert.matches('"loss": null', text) -- JSON has no NaN
      end
      log = L.open(path, { resume_step = 3 })
      log:row({ step = 4, epoch = 0, loss = 0.2, lr = 1e-3 })
      log:close()
      local steps = {}
      for line in h.read(path):gmatch('[^\n]+') do
        local st = tonumber(line:match('^(%d+),') or line:match('"step": (%d+)'))
        if st then steps[#steps + 1] = st end
      end
      assert.are.same({ 1, 2, 3, 4 }, steps)
      h.rmdir(dir)
    end)
  end
end)

describe('checkpoint directories', function()
  local ck = training.checkpoint
  local fs = training.fs

  local function write_ckpt(run, text)
    return ck.save(run, function(dir)
      h.write(dir .. '/payload.txt', text)
      ck.write_state(dir, { step = #text })
    end)
  end

  it('swap in atomically; a failed save leaves the previous checkpoint as it was', function()
    local run = h.tmpdir()
    local path = write_ckpt(run, 'first')
    assert.are.equal(run .. '/checkpoint', path)
    local before = h.read(path .. '/payload.txt') .. h.read(path .. '/' .. ck.STATE_NAME)
    local ok, e = pcall(ck.save, run, function(dir)
      h.write(dir .. '/payload.txt', 'half-written')
      error('disk full')
    end)
    assert.is_false(ok)
    assert.matches('disk full', tostring(e))
    assert.are.equal(before, h.read(path .. '/payload.txt') .. h.read(path .. '/' .. ck.STATE_NAME))
    assert.are.equal(path, ck.find(run))
    -- the next save clears the leftovers and replaces the checkpoint
    write_ckpt(run, 'second')
    assert.are.equal('second', h.read(path .. '/payload.txt'))
    local names = {}
    for _, en in ipairs(fs.list(run)) do names[#names + 1] = en.name end
    assert.are.same({ 'checkpoint' }, names)
    h.rmdir(run)
  end)

  it('recover the previous checkpoint when a save stopped between its two renames', function()
    local run = h.tmpdir()
    write_ckpt(run, 'kept')
    -- the state after `rename(checkpoint, .checkpoint.old-N)` and before the new one moved in
    fs.rename(run .. '/checkpoint', run .. '/.checkpoint.old-123')
    assert.are.equal(run .. '/checkpoint', ck.find(run))
    assert.are.equal('kept', h.read(run .. '/checkpoint/payload.txt'))
    h.rmdir(run)
  end)

  it('name what is missing', function()
    local run = h.tmpdir()
    local p, why = ck.find(run)
    assert.is_nil(p)
    assert.matches('holds no checkpoint', why)
    p, why = ck.find(run .. '/nope')
    assert.is_nil(p)
    assert.matches('does not exist', why)
    h.rmdir(run)
  end)
end)
