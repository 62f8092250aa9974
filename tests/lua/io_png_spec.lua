-- io_png_spec.lua: ddpm.io.load_png / save_png through libpng: every colour type and bit depth
-- (hand-made PNGs), compositing on white, round trips, and corrupt/truncated files as clear errors.
local ddpm = require 'ddpm'
local H = require 'formats_helpers'

describe('png', function()
  local dir
  setup(function() dir = H.tmpdir('png') end)
  teardown(function() H.rmdir(dir) end)
  local function file(name, bytes)
    local p = dir .. '/' .. name
    H.write(p, bytes)
    return p
  end
  local function px(t, y, x) return t:select(0, y):select(0, x):tolist() end

  it('reads RGBA raw and composited on white (rounding half up)', function()
    local p = file('rgba.png', H.png { w = 2, h = 1, color = 6, rows = { '\200\100\0\128' .. '\10\20\30\255' } })
    local raw = ddpm.io.load_png(p, { mode = 'RGBA' })
    assert.are.same({ 1, 2, 4 }, raw:shape())
    assert.are.equal(ddpm.uint8, raw.dtype)
    assert.are.same({ 200, 100, 0, 128 }, px(raw, 0, 0))
    local rgb = ddpm.io.load_png(p)
    assert.are.same({ 1, 2, 3 }, rgb:shape())
    -- floor((2 (c a + 255 (255 - a)) + 255) / 510) with a = 128
    local function comp(c, a) return math.floor((2 * (c * a + 255 * (255 - a)) + 255) / 510) end
    assert.are.same({ comp(200, 128), comp(100, 128), comp(0, 128) }, px(rgb, 0, 0))
    assert.are.same({ 10, 20, 30 }, px(rgb, 0, 1))
  end)

  it('reads RGB, grey, grey+alpha, low bit depths, 16 bits, palettes with transparency, interlacing', function()
    local rgb = file('rgb.png', H.png { w = 1, h = 2, color = 2, rows = { '\1\2\3', '\4\5\6' } })
    assert.are.same({ { { 1, 2, 3 } }, { { 4, 5, 6 } } }, ddpm.io.load_png(rgb):tolist())
    assert.are.same({ 4, 5, 6, 255 }, px(ddpm.io.load_png(rgb, { mode = 'RGBA' }), 1, 0))
    local grey = file('grey.png', H.png { w = 2, h = 1, color = 0, rows = { '\0\77' } })
    assert.are.same({ 77, 77, 77 }, px(ddpm.io.load_png(grey), 0, 1))
    assert.are.same({ 1, 2, 1 }, ddpm.io.load_png(grey, { mode = 'native' }):shape())
    local ga = file('ga.png', H.png { w = 1, h = 1, color = 4, rows = { '\50\0' } })
    assert.are.same({ 255, 255, 255 }, px(ddpm.io.load_png(ga), 0, 0)) -- fully transparent: white
    assert.are.same({ 50, 50, 50, 0 }, px(ddpm.io.load_png(ga, { mode = 'RGBA' }), 0, 0))
    local g1 = file('g1.png', H.png { w = 8, h = 1, color = 0, depth = 1, rows = { '\170' } }) -- 10101010
    assert.are.same({ 255, 0, 255, 0, 255, 0, 255, 0 }, ddpm.io.load_png(g1, { mode = 'native' }):view(-1):tolist())
    local d16 = file('d16.png', H.png { w = 1, h = 1, color = 2, depth = 16, rows = { '\18\52\171\205\255\255' } })
    assert.are.same({ 18, 171, 255 }, px(ddpm.io.load_png(d16), 0, 0)) -- high bytes
    local pal = file('pal.png', H.png { w = 2, h = 1, color = 3, rows = { '\0\1' },
      chunks = { { 'PLTE', '\255\0\0\0\0\255' }, { 'tRNS', '\0' } } })
    assert.are.same({ 255, 0, 0, 0 }, px(ddpm.io.load_png(pal, { mode = 'RGBA' }), 0, 0))
    assert.are.same({ 0, 0, 255, 255 }, px(ddpm.io.load_png(pal, { mode = 'RGBA' }), 0, 1))
    assert.are.same({ 255, 255, 255 }, px(ddpm.io.load_png(pal), 0, 0))
    local il = file('il.png', H.png { w = 1, h = 1, color = 2, interlace = 1, rows = { '\9\8\7' } })
    assert.are.same({ 9, 8, 7 }, px(ddpm.io.load_png(il), 0, 0))
  end)

  it('round-trips uint8 images of 1-4 channels and any layout', function()
    local g = ddpm.Generator():manual_seed(3)
    for _, shape in ipairs({ { 5, 7 }, { 5, 7, 1 }, { 5, 7, 2 }, { 5, 7, 3 }, { 5, 7, 4 } }) do
      local img = ddpm.randint(0, 256, shape, { generator = g, dtype = ddpm.uint8 })
      local p = dir .. '/rt.png'
      ddpm.io.save_png(p, img)
      local back = ddpm.io.load_png(p, { mode = 'native' })
      assert.is_true(back:view(-1):equal(img:contiguous():view(-1)), table.concat(shape, 'x'))
    end
    local chw = ddpm.randint(0, 256, { 3, 4, 6 }, { generator = g, dtype = ddpm.uint8 })
    ddpm.io.save_png(chw:permute(1, 2, 0), dir .. '/perm.png') -- (img, path) order works too
    assert.is_true(ddpm.io.load_png(dir .. '/perm.png'):equal(chw:permute(1, 2, 0)))
  end)

  it('refuses corrupt, truncated and non-PNG files with the file name', function()
    local good = H.png { w = 3, h = 2, color = 2, rows = { ('\1\2\3'):rep(3), ('\4\5\6'):rep(3) } }
    assert.are.same({ 2, 3, 3 }, ddpm.io.load_png(file('ok.png', good)):shape())
    for n = 0, #good - 1, 3 do
      H.raises(function() ddpm.io.load_png(file('trunc.png', good:sub(1, n))) end, 'trunc.png')
    end
    local idat = good:find('IDAT', 1, true)
    local flipped = good:sub(1, idat + 6) .. string.char((good:byte(idat + 7) + 1) % 256) .. good:sub(idat + 8)
    H.raises(function() ddpm.io.load_png(file('crc.png', flipped)) end, 'crc.png', 'corrupt or truncated PNG')
    H.raises(function() ddpm.io.load_png(file('nopng.png', 'GIF89a' .. good)) end, 'nopng.png', 'not a PNG file')
    local huge = H.png { w = 100000, h = 100000, color = 2, rows = { '\0\0\0' } }
    H.raises(function() ddpm.io.load_png(file('huge.png', huge)) end, 'huge.png', 'exceeds user limit')
    local bomb = H.png { w = 30000, h = 30000, color = 6, rows = { '\0\0\0\0' } }
    H.raises(function() ddpm.io.load_png(file('bomb.png', bomb)) end, 'bomb.png', 'compressed data can hold')
    H.raises(function() ddpm.io.load_png(dir .. '/missing.png') end, 'missing.png', 'No such file')
    H.raises(function() ddpm.io.load_png(file('x.png', good), { mode = 'CMYK' }) end, "mode must be 'RGB'")
  end)

  it('refuses images it cannot write, and unwritable paths; never destroys the previous file', function()
    H.raises(function() ddpm.io.save_png(dir .. '/f.png', ddpm.zeros(4, 4, 3)) end, 'expected a uint8 image', 'to_uint8')
    H.raises(function() ddpm.io.save_png(dir .. '/f.png', ddpm.zeros(4, 4, 5, { dtype = ddpm.uint8 })) end, 'uint8 image')
    H.raises(function() ddpm.io.save_png(dir .. '/f.png', ddpm.zeros(0, 4, { dtype = ddpm.uint8 })) end, 'uint8 image')
    H.raises(function() ddpm.io.save_png(dir .. '/no/dir/f.png', ddpm.zeros(2, 2, { dtype = ddpm.uint8 })) end, 'no/dir')
    local p = dir .. '/keep.png'
    local img = ddpm.full({ 2, 2, 3 }, 7, { dtype = ddpm.uint8 })
    ddpm.io.save_png(p, img)
    local rc = H.run_child(string.format(
      'ddpm.io.save_png(%q, ddpm.randint(0, 256, {1000, 1000, 3}, {dtype = ddpm.uint8}))', p), 'ulimit -f 64')
    assert.are_not.equal(0, rc)
    assert.is_true(ddpm.io.load_png(p):equal(img))
  end)

  it('composites and box-averages by an integer factor (the data-set resampler)', function()
    -- 2x2 block: two opaque red pixels, one transparent, one half-transparent black
    local img = ddpm.tensor({ { { 255, 0, 0, 255 }, { 255, 0, 0, 255 } }, { { 0, 0, 0, 0 }, { 0, 0, 0, 128 } } },
      { dtype = ddpm.uint8 })
    local out = ddpm.io.png.composite_box(img, 2)
    assert.are.same({ 1, 1, 3 }, out:shape())
    local function expect(cs, as)
      local num = 0
      for i = 1, 4 do num = num + cs[i] * as[i] + 255 * (255 - as[i]) end
      local den = 255 * 4
      return math.floor((2 * num + den) / (2 * den))
    end
    local as = { 255, 255, 0, 128 }
    assert.are.same({ expect({ 255, 255, 0, 0 }, as), expect({ 0, 0, 0, 0 }, as), expect({ 0, 0, 0, 0 }, as) },
      out:view(-1):tolist())
    H.raises(function() ddpm.io.png.composite_box(img, 3) end, 'must be >= 1 and divide')
  end)
end)
