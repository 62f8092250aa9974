-- e2e_tutorial_spec.lua: scripts/tutorial.lua, the line-by-line port of the tutorial, runs end to
-- end (a couple of steps of the full-size model on 8x8 sprites): the epoch line in the tutorial's
-- words, a UNet directory diffusers' from_pretrained reads, the label net, the 5x4 grid.
local ddpm = require 'ddpm'
local h = require 'e2e_helpers'

describe('scripts/tutorial.lua', function()
  local dir
  setup(function()
    dir = h.tmpdir()
    h.write_data(dir, { n = 12, classes = 5 })
  end)
  teardown(function() h.rmdir(dir) end)

  it('trains, saves the model in the tutorial layout and writes the grid', function()
    local out = dir .. '/run'
    local r = h.script('tutorial.lua', { '--data', dir .. '/images.npy', '--labels', dir .. '/labels.npy',
      '--epochs', '2', '--batch-size', '6', '--max-steps', '3', '--sample-steps', '2', '--out', out })
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('Finished epoch 0%. Average loss for this epoch: %d%.%d%d%d%d%d%d\n', r.stdout)
    assert.matches('Finished epoch 1%.', r.stdout)
    local unet = ddpm.models.UNet2DConditionModel.from_pretrained(out .. '/unet')
    assert.are.same({ 64, 128 }, unet.config.block_out_channels)
    local sd = ddpm.load(out .. '/emb_net.safetensors')
    assert.are.same({ 64, 5 }, sd['0.weight']:shape())
    local img = ddpm.io.load_png(out .. '/samples.png')
    -- 5 rows of 4 samples, 8x8 enlarged 8x, 2 px padding
    assert.are.same({ 2 + 5 * 66, 2 + 4 * 66, 3 }, img:shape())
  end)

  it('refuses --data without --labels before any work', function()
    local r = h.script('tutorial.lua', { '--data', dir .. '/images.npy' })
    assert.are_not.equal(0, r.status)
    assert.matches('give %-%-data and %-%-labels together', r.stderr)
  end)
end)
