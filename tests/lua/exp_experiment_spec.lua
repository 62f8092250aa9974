-- exp_experiment_spec.lua: train_classifier.lua (stratified held-out split, accuracy, saved files)
-- and the label-masking experiment end to end with tiny settings: one model per mask probability,
-- every guidance scale, the results table (CSV, Markdown), the plot and a grid per setting; run
-- again, it reuses the finished models.
local ddpm = require 'ddpm'
local h = require 'e2e_helpers'

local dir
setup(function()
  dir = h.tmpdir()
  h.write_data(dir, { n = 30, classes = 3 })
end)
teardown(function() h.rmdir(dir) end)

local function data_words() return { '--data', dir .. '/images.npy', '--labels', dir .. '/labels.npy' } end

describe('train_classifier.lua', function()
  it('trains on a stratified split, reports the held-out accuracy and saves itself', function()
    local out = dir .. '/clf'
    local r = h.script('train_classifier.lua', h.words(data_words(), '--epochs', '2', '--width', '8', '--holdout', '0.2',
      '--no-progress', '--out', out, '--class-names', 'red', 'green', 'blue'))
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('30 images in 3 classes; 24 for training, 6 held out %(0%.2 of each class, seed 0%)', r.stdout)
    local acc = tonumber(r.stdout:match('held%-out accuracy: ([%d%.]+) %(red [%d%.]+, green [%d%.]+, blue [%d%.]+%)'))
    assert.is_not_nil(acc, r.stdout)
    local clf, cfg = ddpm.metrics.load_classifier(out)
    assert.are.equal(acc, math.floor(cfg.heldout_accuracy * 1e4 + 0.5) / 1e4)
    assert.are.same({ 'red', 'green', 'blue' }, cfg.class_names)
    assert.are.equal(6, cfg.split.n_heldout)
    assert.are.same({ 5, 3 }, clf(ddpm.randn(5, 3, 8, 8)):shape())
    -- a bad option stops it before training
    r = h.script('train_classifier.lua', h.words(data_words(), '--holdout', '1.5', '--out', dir .. '/clf2'))
    assert.are.equal(2, r.status)
    assert.matches('argument %-%-holdout', r.stderr)
    r = h.script('train_classifier.lua', { '--data', dir .. '/missing.npy', '--labels', dir .. '/labels.npy', '--out', dir .. '/clf3' })
    assert.are.equal(1, r.status)
    assert.matches("train_classifier%.lua: error: .*missing%.npy", r.stderr)
  end)
end)

describe('experiments/label_masking.lua', function()
  it('trains per mask probability, samples per guidance scale, writes the table, the plot and the grids', function()
    local out = dir .. '/lm'
    local words = h.words(data_words(), h.TINY, h.TINY_COND, '--epochs', '2', '--warmup', '1', '--mask-probs', '0,0.5',
      '--guidance', '1,2', '--samples-per-class', '3', '--grid-per-class', '2', '--classifier-epochs', '1', '--out', out)
    local r = h.script('experiments/label_masking.lua', words)
    assert.are.equal(0, r.status, r.stderr)
    -- the training options given were passed on to every model
    local cmd = r.stdout:match("train_better_conditional%.lua' '%-%-mask%-prob' '0%.5'([^\n]*)")
    assert.is_not_nil(cmd, r.stdout)
    assert.matches("'%-%-channels' '8,16'", cmd)
    assert.matches("'%-%-warmup' '1'", cmd)
    assert.is_true(h.exists(out .. '/mask_0/checkpoint/training_state.safetensors'))
    assert.is_true(h.exists(out .. '/mask_0p5/checkpoint/training_state.safetensors'))
    local csv = h.read(out .. '/results.csv')
    local lines = {}
    for l in csv:gmatch('[^\n]+') do lines[#lines + 1] = l end
    assert.are.equal(5, #lines)
    assert.are.equal('mask_prob,guidance,accuracy,frechet,pixel_diversity,feature_diversity,accuracy_class_0,accuracy_class_1,'
      .. 'accuracy_class_2', lines[1])
    assert.matches('^0%.5,2,[%d%.]+,[%d%.]+,[%d%.]+,[%d%.]+,', lines[5])
    local md = h.read(out .. '/results.md')
    assert.matches('| mask prob | guidance | class accuracy | Fréchet distance |', md)
    assert.matches('\n| 0%.5 | 2 | ', md)
    local w, hgt = h.png_size(out .. '/plot.png')
    assert.are.equal(3 * 360, w)
    assert.is_true(hgt > 270)
    for _, f in ipairs({ 'mask_0_guidance_1', 'mask_0_guidance_2', 'mask_0p5_guidance_1', 'mask_0p5_guidance_2' }) do
      assert.is_true(h.exists(out .. '/grids/' .. f .. '.png'), f)
    end
    -- three classes of two images, labelled rows
    local gw, gh = h.png_size(out .. '/grids/mask_0_guidance_1.png')
    assert.is_true(gw > 2 * 8 * 4 and gh >= 3 * 8 * 4, gw .. 'x' .. gh)
    local res = ddpm.io.json.read(out .. '/results.json')
    assert.are.equal(4, #res.rows)

    -- the same command again reuses the models (and gives the same scores)
    local again = h.script('experiments/label_masking.lua', words)
    assert.are.equal(0, again.status, again.stderr)
    assert.matches('mask probability 0%.5: reusing the finished run', again.stdout)
    assert.is_falsy(again.stdout:match('Finished epoch'))
    assert.are.equal(csv, h.read(out .. '/results.csv'))
  end)
end)
