-- e2e_scripts_spec.lua: the user-facing scripts as subprocesses with tiny settings:
-- train_conditional.lua (layout, log, labelled grid), sample.lua (the PNG and its size),
-- train_unconditional.lua, --help, and Ctrl-C (SIGINT) -> checkpoint -> --resume.
local ddpm = require 'ddpm'
local h = require 'e2e_helpers'

local data_dir, run_dir
setup(function()
  data_dir = h.tmpdir()
  h.write_data(data_dir, { n = 24, classes = 5 })
end)
teardown(function()
  h.rmdir(data_dir)
  if run_dir then h.rmdir(run_dir) end
end)

local function cond_words(out, ...)
  return h.words('--data', data_dir .. '/images.npy', '--labels', data_dir .. '/labels.npy', h.TINY, h.TINY_COND,
    '--out', out, ...)
end

local function lines(s)
  local r = {}
  for l in s:gmatch('[^\n]+') do r[#r + 1] = l end
  return r
end

describe('train_conditional.lua', function()
  it('trains, prints the epoch loss, writes the checkpoint, the log and a labelled grid', function()
    run_dir = h.tmpdir()
    local r = h.script('train_conditional.lua', cond_words(run_dir, '--epochs', '2', '--class-names', 'hero', 'nonhero',
      'food', 'spell', 'item'))
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('data: .*images%.npy, 24 images in 5 classes %(hero, nonhero, food, spell, item%)', r.stdout)
    assert.matches('Finished epoch 0%. Average loss for this epoch: %d%.%d+', r.stdout)
    assert.matches('Finished epoch 1%.', r.stdout)
    assert.matches('checkpoint: ' .. run_dir:gsub('%p', '%%%0') .. '/checkpoint %(step 6%)', r.stdout)
    for _, f in ipairs({ 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'class_net.safetensors',
      'class_net.json', 'scheduler/scheduler_config.json', 'model_index.json', 'training_state.safetensors' }) do
      assert.is_true(h.exists(run_dir .. '/checkpoint/' .. f), f)
    end
    local cfg = ddpm.io.json.read(run_dir .. '/checkpoint/scheduler/scheduler_config.json')
    assert.are.equal('DDPMScheduler', cfg._class_name)
    assert.are.equal(10, cfg.num_train_timesteps)
    local log = lines(h.read(run_dir .. '/train_log.csv'))
    assert.are.equal(7, #log)
    -- 5 rows (one per class) of one 8x8 image enlarged 8x, 2 px padding, a label column on the left
    local w, ht = h.png_size(run_dir .. '/samples.png')
    assert.are.equal(2 + 5 * 66, ht)
    assert.is_true(w > 2 + 66)
  end)

  it('--help lists the options with their defaults', function()
    local r = h.script('train_conditional.lua', { '--help' })
    assert.are.equal(0, r.status)
    for _, pat in ipairs({ '%-%-epochs EPOCHS', 'default: 32', '%-%-batch%-size', 'default: 128', '%-%-lr LR',
      'default: 0%.0001', '%-%-timesteps', 'default: 200', '%-%-resume DIR', '%-%-save%-every', '%-%-max%-steps',
      '%-%-log FILE', '%-%-channels', '%-%-layers%-per%-block', '%-%-flip', '%-%-guidance', '%-%-seed' }) do
      assert.matches(pat, r.stdout)
    end
  end)
end)

describe('sample.lua', function()
  it('writes the per-class grid at the requested size', function()
    assert.is_not_nil(run_dir, 'needs the training run above')
    local out = run_dir .. '/grid.png'
    local r = h.script('sample.lua', { '--checkpoint', run_dir, '--per-class', '2', '--steps', '3', '--scheduler', 'ddim',
      '--scale', '2', '--guidance', '2', '--seed', '1', '--out', out, '--no-progress' })
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('DDIMScheduler, 3 steps, guidance 2', r.stdout)
    local w, ht = h.png_size(out)
    assert.are.equal(2 + 5 * 18, ht)
    local labels_w = w - (2 + 2 * 18)
    assert.is_true(labels_w > 0)
    -- the same seed gives the same picture; a class subset gives fewer rows
    local again = run_dir .. '/grid2.png'
    r = h.script('sample.lua', { '--checkpoint', run_dir .. '/checkpoint', '--per-class', '2', '--steps', '3',
      '--scheduler', 'ddim', '--scale', '2', '--guidance', '2', '--seed', '1', '--out', again, '--no-progress' })
    assert.are.equal(0, r.status, r.stderr)
    assert.are.equal(h.read(out), h.read(again))
    -- --clip-sample: the saved config (DDPM's clip_sample=true) is what `true` gives; `false` differs
    local function ddim_grid(clip, path)
      local rr = h.script('sample.lua', { '--checkpoint', run_dir, '--per-class', '2', '--steps', '3', '--scheduler', 'ddim',
        '--scale', '2', '--guidance', '2', '--seed', '1', '--out', path, '--no-progress', '--clip-sample', clip })
      assert.are.equal(0, rr.status, rr.stderr)
      return h.read(path)
    end
    assert.are.equal(h.read(out), ddim_grid('true', run_dir .. '/clip_true.png'))
    assert.are_not.equal(h.read(out), ddim_grid('false', run_dir .. '/clip_false.png'))
    r = h.script('sample.lua', { '--checkpoint', run_dir, '--per-class', '3', '--steps', '2', '--classes', 'food', '4',
      '--scheduler', 'dpm', '--scale', '1', '--out', again, '--no-progress' })
    assert.are.equal(0, r.status, r.stderr)
    w, ht = h.png_size(again)
    assert.are.equal(2 + 2 * 10, ht)
  end)

  it('reports a missing checkpoint and an unwritable output', function()
    local r = h.script('sample.lua', { '--checkpoint', data_dir .. '/nope', '--out', data_dir .. '/g.png' })
    assert.are_not.equal(0, r.status)
    assert.matches("sample.lua: error: .*nope' does not exist", r.stderr)
    r = h.script('sample.lua', { '--checkpoint', run_dir or data_dir, '--out', data_dir .. '/images.npy/g.png' })
    assert.are_not.equal(0, r.status)
    assert.matches('cannot be written', r.stderr)
  end)
end)

describe('train_unconditional.lua', function()
  it('trains the UNet2DModel and writes a square sample grid', function()
    local out = h.tmpdir()
    local r = h.script('train_unconditional.lua', h.words('--data', data_dir .. '/images.npy', h.TINY, h.TINY_UNCOND,
      '--epochs', '1', '--out', out))
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('model: UNet2DModel, %d+ parameters', r.stdout)
    assert.matches('Finished epoch 0', r.stdout)
    local idx = ddpm.io.json.read(out .. '/checkpoint/model_index.json')
    assert.are.equal('DDPMPipeline', idx._class_name)
    local w, ht = h.png_size(out .. '/samples.png')
    assert.are.same({ 2 + 2 * 66, 2 + 2 * 66 }, { w, ht })
    h.rmdir(out)
  end)
end)

describe('Ctrl-C', function()
  it('saves a checkpoint and exits 130; --resume continues from it', function()
    local out = h.tmpdir()
    local parts = { h.q(h.exe), h.q(h.source .. '/scripts/train_conditional.lua') }
    for _, w in ipairs(cond_words(out, '--epochs', '1000', '--save-every', '0', '--no-samples')) do parts[#parts + 1] = h.q(w) end
    -- start training, wait for a few logged steps, then SIGINT it as a terminal's Ctrl-C would
    local cmd = table.concat(parts, ' ') .. ' >' .. h.q(out .. '/stdout') .. ' 2>' .. h.q(out .. '/stderr') .. ' & pid=$!\n'
      .. 'i=0; while [ $i -lt 1200 ]; do n=$(wc -l < ' .. h.q(out .. '/train_log.csv') .. ' 2>/dev/null || echo 0); '
      .. '[ "$n" -ge 4 ] && break; sleep 0.05; i=$((i+1)); done\n'
      .. 'kill -INT $pid; wait $pid; echo $?'
    local r = h.sh(cmd, { env = { OMP_NUM_THREADS = '1' } })
    local err = h.read(out .. '/stderr')
    assert.are.equal('130', r.stdout:match('(%d+)%s*$'), err)
    local step = tonumber(err:match('interrupted at step (%d+): checkpoint saved to'))
    assert.is_not_nil(step, err)
    assert.matches('continue with %-%-resume', err)
    assert.is_falsy(err:match('stack traceback'))
    local state = ddpm.load(out .. '/checkpoint/training_state.safetensors')
    assert.are.equal(step, state.step)
    -- every logged step is in the checkpoint (the log may not run ahead of it)
    assert.are.equal(step + 1, #lines(h.read(out .. '/train_log.csv')))
    local r2 = h.script('train_conditional.lua', { '--resume', out, '--max-steps', tostring(step + 2) })
    assert.are.equal(0, r2.status, r2.stderr)
    assert.matches('resuming from .* at step ' .. step, r2.stdout)
    state = ddpm.load(out .. '/checkpoint/training_state.safetensors')
    assert.are.equal(step + 2, state.step)
    assert.are.equal(step + 3, #lines(h.read(out .. '/train_log.csv')))
    h.rmdir(out)
  end)
end)

describe('quickstart.sh', function()
  -- the options of the main job, as quickstart.sh passes them (without --out/--overwrite/"$@")
  local function quick_options(text, from)
    local cmd = text:match(from .. '(.-)%-%-out')
    assert.is_not_nil(cmd, 'no train_conditional.lua command found')
    local words = {}
    for w in cmd:gsub('\\\n', ' '):gmatch('%S+') do words[#words + 1] = w end
    return words
  end

  it('runs the training script with options it accepts, the same the README shows', function()
    local sh = h.read(h.source .. '/scripts/quickstart.sh')
    assert.matches('install_deps%.sh', sh)
    local words = quick_options(sh, 'build/ddpm%-lua scripts/train_conditional%.lua \\\n')
    assert.is_true(#words > 10)
    local readme = h.read(h.source .. '/README.md')
    assert.are.same(words, quick_options(readme, 'build/ddpm%-lua scripts/train_conditional%.lua \\\n'))
    -- a two-step run with exactly these options on the tiny data
    local out = h.tmpdir()
    local r = h.script('train_conditional.lua', h.words(words, '--data', data_dir .. '/images.npy', '--labels',
      data_dir .. '/labels.npy', '--max-steps', '2', '--no-samples', '--no-progress', '--out', out))
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('checkpoint: .*%(step 2%)', r.stdout)
    h.rmdir(out)
    assert.are.equal(0, h.sh('bash -n ' .. h.q(h.source .. '/scripts/quickstart.sh')).status)
  end)
end)
