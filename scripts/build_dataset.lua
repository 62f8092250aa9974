-- build_dataset.lua: build (or reuse) the built-in Angband sprite set and write a labelled preview
-- grid, 16 random images per class.
--   ddpm-lua scripts/build_dataset.lua [--tileset both|bolt|gervais] [--cache-dir DIR] [--force]
--                                      [--preview preview.png] [--seed 0]
-- Credit "David Gervais" (CC-BY-3.0) wherever Gervais tiles are shown; --tileset bolt is public domain.
local ddpm = require 'ddpm'
local argparse = require 'argparse'

local parser = argparse('build_dataset.lua', 'Build the Angband 16x16 sprite set (see ANGBAND_SPRITES.md).')
parser:option('--tileset', 'both, bolt or gervais', 'both')
parser:option('--cache-dir', 'where the .npy files (and downloaded packages) go', ddpm.data.angband.default_cache_dir())
parser:flag('--force', 'rebuild even if cached')
parser:option('--preview', 'write a preview grid PNG here')
parser:option('--seed', 'seed of the preview sample', '0')
local a = parser:parse(arg)

local files = ddpm.data.angband.build({ tileset = a.tileset, cache_dir = a.cache_dir, force = a.force })
print(string.format('images: %s\nlabels: %s\nindex:  %s%s', files.images, files.labels, files.index,
  files.cached and '  (cached)' or ''))
local ds = ddpm.data.NpyImageDataset(files.images, files.labels)
local ids = ds.labels:argmax(1)
local g = ddpm.Generator():manual_seed(tonumber(a.seed))
local rows = {}
for c, name in ipairs(ddpm.data.angband.classes) do
  local members = ids:eq(ddpm.full({}, c - 1, { dtype = ddpm.int64 })):long()
  local n = members:sum():item()
  print(string.format('  %-8s %5d', name, n))
  -- 16 random members of the class: indices of the class, permuted
  local idx = ddpm.arange(ds:__len()):index_select(0, ddpm.multinomial(members:double(), math.min(16, n), false, { generator = g }))
  rows[#rows + 1] = ds.images:index_select(0, idx)
end
print(string.format('  %-8s %5d', 'total', ds:__len()))
if a.preview then
  ddpm.utils.save_image(ddpm.cat(rows, 0), a.preview, { nrow = 16, value_range = { -1, 1 }, scale = 4,
    labels = ddpm.data.angband.classes, pad_value = 1 })
  print('preview: ' .. a.preview .. (a.tileset ~= 'bolt' and '  (tiles by Adam Bolt and David Gervais)' or ''))
end
