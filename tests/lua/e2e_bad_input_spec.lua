-- e2e_bad_input_spec.lua: bad input to the training script is reported before any training starts,
-- with a clear message and a non-zero exit status, and an existing checkpoint is never damaged.
local h = require 'e2e_helpers'

local dir, run_dir, ckpt_bytes
local function snapshot(run)
  local c = run .. '/checkpoint/'
  return (h.read(c .. 'unet/diffusion_pytorch_model.safetensors') or '') .. (h.read(c .. 'training_state.safetensors') or '')
    .. (h.read(c .. 'class_net.safetensors') or '')
end

setup(function()
  dir = h.tmpdir()
  h.write_data(dir, { n = 24, classes = 5 })
  -- a finished run whose checkpoint the failing runs below must leave alone
  run_dir = dir .. '/run'
  local r = h.script('train_conditional.lua', h.words('--data', dir .. '/images.npy', '--labels', dir .. '/labels.npy',
    h.TINY, h.TINY_COND, '--epochs', '1', '--no-samples', '--out', run_dir))
  assert(r.status == 0, r.stderr)
  ckpt_bytes = snapshot(run_dir)
end)
teardown(function() h.rmdir(dir) end)

-- run train_conditional.lua with tiny settings plus `words`; it must fail before training
local function fails(words, pattern, status)
  local out = dir .. '/out-' .. tostring(math.random(1e9))
  local w = h.words(h.TINY, h.TINY_COND, '--epochs', '1', '--no-samples')
  local has_out = false
  for _, x in ipairs(words) do if x == '--out' or x == '--resume' then has_out = true end end
  if not has_out then w = h.words(w, '--out', out) end
  local r = h.script('train_conditional.lua', h.words(w, words))
  if status then assert.are.equal(status, r.status, r.stderr) else assert.are_not.equal(0, r.status, r.stdout) end
  assert.matches(pattern, r.stderr)
  assert.is_falsy(r.stderr:match('stack traceback'), r.stderr)
  -- nothing trained: no summary, no epoch, no checkpoint
  assert.is_falsy(r.stdout:match('epoch'), r.stdout)
  assert.is_false(h.exists(out .. '/checkpoint/training_state.safetensors'))
  assert.are.equal(ckpt_bytes, snapshot(run_dir), 'the existing checkpoint changed')
  return r
end

local function data(imgs, labels)
  return { '--data', imgs or (dir .. '/images.npy'), '--labels', labels or (dir .. '/labels.npy') }
end

describe('train_conditional.lua refuses before training', function()
  it('a missing images file', function()
    fails(data(dir .. '/missing.npy'), "train_conditional%.lua: error: .*cannot open '.*missing%.npy'")
  end)

  it('a missing labels file', function()
    fails(data(nil, dir .. '/nolabels.npy'), "cannot open '.*nolabels%.npy'")
  end)

  it('a corrupt .npy file', function()
    h.write(dir .. '/garbage.npy', 'this is not numpy data')
    fails(data(dir .. '/garbage.npy'), 'garbage%.npy.*magic string')
  end)

  it('a truncated .npy file', function()
    local s = h.read(dir .. '/images.npy')
    h.write(dir .. '/trunc.npy', s:sub(1, #s - 100))
    fails(data(dir .. '/trunc.npy'), 'trunc%.npy.*truncated')
  end)

  it('images of the wrong type', function()
    fails(data(dir .. '/labels.npy', dir .. '/labels.npy'), 'expected uint8 images %[N, H, W, 3%]')
  end)

  it('a label count that differs from the image count', function()
    local sub = dir .. '/fewer'
    os.execute('mkdir -p ' .. h.q(sub))
    h.write_data(sub, { n = 24, label_rows = 23 })
    fails(data(sub .. '/images.npy', sub .. '/labels.npy'), 'has 23 labels but .* has 24 images')
  end)

  it('--data without --labels', function()
    fails({ '--data', dir .. '/images.npy' }, '%-%-data needs %-%-labels')
  end)

  it('an unknown option (status 2, with a suggestion)', function()
    local r = fails(h.words(data(), '--epoch', '3'), "unrecognized option '%-%-epoch'", 2)
    assert.matches('usage: train_conditional%.lua', r.stderr)
  end)

  it('a corrupt PNG in an image folder', function()
    local root = dir .. '/imgs'
    os.execute('mkdir -p ' .. h.q(root .. '/a') .. ' ' .. h.q(root .. '/b'))
    local img = require('ddpm').zeros({ 8, 8, 3 }, { dtype = require('ddpm').uint8 })
    require('ddpm').io.save_png(root .. '/a/one.png', img)
    h.write(root .. '/b/two.png', 'not a png')
    fails({ '--image-dir', root, '--image-size', '8' }, 'two%.png.*PNG')
  end)

  it('an image folder without images, or missing', function()
    local root = dir .. '/empty'
    os.execute('mkdir -p ' .. h.q(root .. '/a'))
    fails({ '--image-dir', root }, "class folder '.*/a' holds no %.png files")
    fails({ '--image-dir', dir .. '/nowhere' }, 'nowhere')
  end)

  it('--resume on a directory without a checkpoint', function()
    local empty = dir .. '/nockpt'
    os.execute('mkdir -p ' .. h.q(empty))
    fails({ '--resume', empty }, "%-%-resume: '.*nockpt' holds no checkpoint")
    fails({ '--resume', dir .. '/absent' }, 'does not exist')
  end)

  it('an output directory that cannot be written', function()
    -- a path below a regular file (permissions would not stop root)
    fails(h.words(data(), '--out', dir .. '/images.npy/run'), "%-%-out '.*' cannot be written")
    fails(h.words(data(), '--log', dir .. '/labels.npy/log.csv'), "%-%-log '.*' cannot be written")
  end)

  it('a new run into a directory that holds a checkpoint', function()
    fails(h.words(data(), '--out', run_dir), 'already holds a checkpoint; continue it with %-%-resume')
  end)

  it('--resume with settings that change what the run computes', function()
    fails({ '--resume', run_dir, '--lr', '0.5' }, '%-%-resume continues the saved run, which used %-%-lr 0%.0001')
  end)

  it('--resume when the label width no longer matches the label net', function()
    -- the run's data files replaced in place by 4-class ones
    local moved = dir .. '/run-data'
    os.execute('mkdir -p ' .. h.q(moved))
    h.write_data(moved, { n = 24, classes = 4 })
    local saved_i, saved_l = h.read(dir .. '/images.npy'), h.read(dir .. '/labels.npy')
    h.write(dir .. '/labels.npy', h.read(moved .. '/labels.npy'))
    local ok, err = pcall(fails, { '--resume', run_dir }, '4 label columns, the checkpoint was trained on 5')
    h.write(dir .. '/images.npy', saved_i)
    h.write(dir .. '/labels.npy', saved_l)
    assert(ok, err)
  end)

  it('--device cuda without a GPU', function()
    local ok, cuda = pcall(require, 'ddpm.cuda')
    if ok and cuda.is_available and cuda.is_available() then
      pending('a GPU is available here')
      return
    end
    fails(h.words(data(), '--device', 'cuda'), 'CUDA is not available')
  end)
end)
