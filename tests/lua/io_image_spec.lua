-- io_image_spec.lua: ddpm.utils.make_grid (torchvision layout), to_uint8/from_uint8 rounding,
-- nearest enlargement, flip, the bitmap font, and save_image written and read back as PNG.
local ddpm = require 'ddpm'
local H = require 'formats_helpers'

-- (t:eq(number) needs the core fix of scalar_like; a 0-d tensor works everywhere)
local function count_eq(t, v) return t:eq(ddpm.full({}, v, { dtype = t.dtype })):sum():item() end

describe('image utils', function()
  local dir
  setup(function() dir = H.tmpdir('img') end)
  teardown(function() H.rmdir(dir) end)

  it('make_grid places images as torchvision does', function()
    -- 5 images 3x2x2 with value i+1; nrow 2, padding 1 -> 3 rows x 2 cols
    local imgs = {}
    for i = 1, 5 do imgs[i] = ddpm.full({ 3, 2, 2 }, i) end
    local g = ddpm.utils.make_grid(ddpm.stack(imgs), { nrow = 2, padding = 1, pad_value = -1 })
    assert.are.same({ 3, 3 * 3 + 1, 2 * 3 + 1 }, g:shape())
    local ch = g:select(0, 0)
    local function at(y, x) return ch:select(0, y):select(0, x):item() end
    assert.are.equal(-1, at(0, 0))
    assert.are.equal(1, at(1, 1))
    assert.are.equal(2, at(1, 4))
    assert.are.equal(3, at(4, 1))
    assert.are.equal(5, at(7, 2))
    assert.are.equal(-1, at(7, 4)) -- the missing sixth image stays padding
    assert.are.equal(-1, at(9, 6))
    -- a list of images, one-channel expansion, a single image returned as is
    assert.are.same({ 3, 6, 10 }, ddpm.utils.make_grid({ ddpm.zeros(1, 2, 2), ddpm.zeros(1, 2, 2) }):shape())
    assert.are.same({ 3, 4, 4 }, ddpm.utils.make_grid(ddpm.zeros(1, 3, 4, 4)):shape())
  end)

  it('make_grid normalizes with value_range, per image with scale_each', function()
    local x = ddpm.tensor({ -1, 0, 1, 3 }):view(2, 1, 1, 2)
    local g = ddpm.utils.make_grid(x, { normalize = true, value_range = { -1, 1 }, padding = 0 })
    assert.are.same({ 0, 0.5, 1, 1 }, g:select(0, 0):view(-1):tolist())
    local e = ddpm.utils.make_grid(x, { normalize = true, scale_each = true, padding = 0 })
    assert.are.same({ 0, 1, 0, 1 }, e:select(0, 0):view(-1):tolist())
    H.raises(function() ddpm.utils.make_grid(ddpm.zeros(2, 2, 2, 2, 2)) end, 'expected images')
  end)

  it('converts to and from uint8 like torchvision save_image and ToTensor+Normalize', function()
    local x = ddpm.tensor({ 0, 0.5 / 255, 0.9999, 1.2, -0.3, 0.5 }):view(1, 1, 6)
    assert.are.same({ 0, 1, 255, 255, 0, 128 }, ddpm.utils.to_uint8(x):view(-1):tolist())
    local s = ddpm.tensor({ -1, 0, 1 }):view(1, 1, 3)
    assert.are.same({ 0, 128, 255 }, ddpm.utils.to_uint8(s, { value_range = { -1, 1 } }):view(-1):tolist())
    local u = ddpm.tensor({ { { 0, 255, 51 } } }, { dtype = ddpm.uint8 }) -- [1, 1, 3] HWC
    local f = ddpm.utils.from_uint8(u)
    assert.are.same({ 3, 1, 1 }, f:shape())
    assert.are.equal(ddpm.float32, f.dtype)
    local expect = ((ddpm.tensor({ 0, 255, 51 }) / 255) - 0.5) / 0.5
    assert.is_true(f:view(-1):equal(expect))
    assert.is_true(ddpm.tensor({ 0, 1, 0.2 }):equal(ddpm.utils.from_uint8(u, { value_range = { 0, 1 } }):view(-1)))
  end)

  it('enlarges with nearest neighbour and flips', function()
    local x = ddpm.tensor({ { 1, 2 }, { 3, 4 } })
    assert.are.same({ { 1, 1, 2, 2 }, { 1, 1, 2, 2 }, { 3, 3, 4, 4 }, { 3, 3, 4, 4 } },
      ddpm.utils.resize_nearest(x, 4, 4):tolist())
    assert.are.same({ { 1, 2 } }, ddpm.utils.resize_nearest(x, 1, 2):tolist())
    assert.are.same({ { 2, 1 }, { 4, 3 } }, ddpm.utils.flip(x, 1):tolist())
  end)

  it('draws text with the bitmap font', function()
    local canvas = ddpm.full({ 9, 20, 3 }, 255, { dtype = ddpm.uint8 })
    ddpm.utils.font.draw(canvas, 'Hi', 1, 1)
    local ink = count_eq(canvas, 0)
    -- H has 17 ink pixels and I has 11, in each of 3 channels
    assert.are.equal((17 + 11) * 3, ink)
    assert.are.equal(11, ddpm.utils.font.text_width('hi'))
    local big = ddpm.full({ 20, 40 }, 255, { dtype = ddpm.uint8 })
    ddpm.utils.font.draw(big, 'H', 0, 0, { scale = 2 })
    assert.are.equal(17 * 4, count_eq(big, 0))
  end)

  it('save_image writes an enlarged grid PNG with row labels', function()
    local x = ddpm.zeros(4, 3, 2, 2)
    x:select(0, 1):fill_(1) -- second image white
    local p = dir .. '/grid.png'
    ddpm.utils.save_image(x, p, { nrow = 2, scale = 3, padding = 1 })
    local img = ddpm.io.load_png(p)
    assert.are.same({ 2 * 7 + 1, 2 * 7 + 1, 3 }, img:shape())
    assert.are.same({ 0, 0, 0 }, img:select(0, 1):select(0, 1):tolist())
    assert.are.same({ 255, 255, 255 }, img:select(0, 6):select(0, 13):tolist())
    -- [-1, 1] samples with labels: a white panel with black text on the left
    local y = ddpm.ones(2, 3, 16, 16)
    local img2 = ddpm.utils.save_image(y, dir .. '/labelled.png', { nrow = 1, value_range = { -1, 1 }, labels = { 'hero', 'food' } })
    local back = ddpm.io.load_png(dir .. '/labelled.png')
    assert.is_true(back:equal(img2))
    assert.is_true(back:size(1) > 2 + 16 * 8)
    assert.is_true(count_eq(back:narrow(1, 0, back:size(1) - (16 * 8 + 4)), 0) > 0)
    H.raises(function() ddpm.utils.save_image(y, dir .. '/none/x.png') end, 'none/x.png')
    H.raises(function() ddpm.utils.save_image(y, nil) end, 'path must be a string')
  end)
end)
