-- data_angband_spec.lua: the built-in Angband sprite set, built from the Debian packages exactly as
-- ANGBAND_SPRITES.md specifies: SHA-256 of the .npy files and raw bytes, counts per class and
-- sheet, the per-image index, caching, and the dataset returned by load_default.
-- Needs the packages installed or `apt-get download` access to a bookworm mirror (as in CI); the
-- downloaded packages are kept in the default cache (~/.cache/ddpm-lua/angband) for later runs.
local ddpm = require 'ddpm'
local H = require 'formats_helpers'
local angband = require 'ddpm.data.angband'

describe('angband sprites', function()
  local dir, root
  setup(function()
    dir = H.tmpdir('angband')
    root = angband.find_root() -- installed packages, or the shared download cache
  end)
  teardown(function() H.rmdir(dir) end)

  it('builds the default set with the checksums and counts of the spec', function()
    local r = angband.build({ root = root, cache_dir = dir, force = true })
    assert.is_false(r.cached)
    assert.are.equal(1991, r.n)
    assert.are.same({ hero = 228, nonhero = 1085, food = 91, spell = 213, item = 374 }, r.counts)
    assert.are.equal('fee0d33ced22770cc4931e87686e6bd397c7c1e96986a9d7a06230608d9a79b0', H.sha256(r.images))
    assert.are.equal('6bf8946a2fd931550ee34c431b08724c30a1a2cd2a60bad54e5d912ce587f43a', H.sha256(r.labels))
    -- X.tobytes(): the data after numpy's 128-byte header
    local raw = dir .. '/raw.bin'
    H.write(raw, H.read(r.images):sub(129))
    assert.are.equal('377116a4a9850b43f396e42804fbb4eb5cf170d8c54dc68f27a56191c623e16f', H.sha256(raw))
    assert.are.same({ references = 1276, distinct = 969, dropped_transparent = 7, dropped_duplicate = 1 }, r.stats.bolt)
    assert.are.same({ references = 1303, distinct = 1035, dropped_transparent = 0, dropped_duplicate = 5 }, r.stats.gervais)
    local shared = os.getenv('DDPM_SHARED')
    if shared and H.exists(shared .. '/data/angband_sprites_index.csv') then
      assert.are.equal(H.read(shared .. '/data/angband_sprites_index.csv'), H.read(r.index))
    end
    -- a second build reuses the cache
    assert.is_true(angband.build({ root = root, cache_dir = dir }).cached)
  end)

  it('builds each tileset on its own with the per-sheet counts', function()
    local b = angband.build({ root = root, cache_dir = dir, tileset = 'bolt', force = true })
    assert.are.same({ hero = 115, nonhero = 542, food = 32, spell = 91, item = 181 }, b.counts)
    local g = angband.build({ root = root, cache_dir = dir, tileset = 'gervais', force = true })
    assert.are.same({ hero = 113, nonhero = 543, food = 59, spell = 122, item = 193 }, g.counts)
    assert.are.same({ 961, 16, 16, 3 }, ddpm.load_npy(b.images):shape())
  end)

  it('load_default returns the cached set as a float dataset in [-1, 1]', function()
    angband.build({ root = root, cache_dir = dir })
    local ds = ddpm.data.load_default({ cache_dir = dir })
    assert.are.equal(1991, ds:__len())
    assert.are.same({ 1991, 3, 16, 16 }, ds.images:shape())
    assert.are.same({ 1991, 5 }, ds.labels:shape())
    assert.are.equal(ddpm.float32, ds.images.dtype)
    assert.are.equal(-1, ds.images:min():item())
    assert.are.equal(1, ds.images:max():item())
    assert.are.same({ 228, 1085, 91, 213, 374 }, ds.labels:sum(0):tolist())
  end)

  it('scripts/build_dataset.lua reports the counts and writes a labelled preview', function()
    angband.build({ root = root, cache_dir = dir })
    local exe = os.getenv('DDPM_LUA') or 'build/ddpm-lua'
    local src = os.getenv('DDPM_SOURCE_DIR') or '.'
    local p = io.popen(string.format("'%s' '%s/scripts/build_dataset.lua' --cache-dir '%s' --preview '%s/preview.png' 2>&1",
      exe, src, dir, dir))
    local out = p:read('*a')
    p:close()
    assert.truthy(out:find('nonhero%s+1085'), out)
    assert.truthy(out:find('total%s+1991'), out)
    local img = ddpm.io.load_png(dir .. '/preview.png')
    assert.are.equal(5 * (16 * 4 + 2) + 2, img:size(0))
  end)

  it('refuses bad options and incomplete package trees clearly', function()
    H.raises(function() angband.build({ tileset = 'shockbolt', cache_dir = dir }) end, "'both', 'bolt' or 'gervais'")
    H.raises(function() angband.build({ root = dir, cache_dir = dir .. '/x', force = true }) end, 'lacks', 'angband')
  end)

  it('explains a failed download', function()
    if root == '/' then
      pending('the packages are installed; the download path is not taken')
      return
    end
    local bin = dir .. '/fakebin'
    os.execute("mkdir -p '" .. bin .. "'")
    H.write(bin .. '/apt-get', '#!/bin/sh\necho "E: Failed to fetch (simulated)"\nexit 100\n')
    os.execute("chmod +x '" .. bin .. "/apt-get'")
    local rc, out = H.run_child(string.format('ddpm.data.angband.find_root({ cache_dir = %q })', dir .. '/dl'),
      "export PATH='" .. bin .. "':$PATH")
    assert.are_not.equal(0, rc)
    assert.truthy(out:find('apt-get download angband=', 1, true), out)
    assert.truthy(out:find('Failed to fetch (simulated)', 1, true), out)
    assert.is_false(H.exists(dir .. '/dl/root/etc/angband/edit/monster.txt'))
  end)
end)
