-- data/angband.lua: the built-in default data set, 16x16 RGB sprites in 5 classes (hero, nonhero,
-- food, spell, item) cut from the Angband tile sheets Debian ships (angband / angband-data
-- 1:3.5.1, bookworm) exactly as /work/shared/data/ANGBAND_SPRITES.md specifies, and cached as .npy
-- (uint8 [N,16,16,3] images + float64 one-hot [N,5] labels, the layout of the tutorial's files).
-- Tile credits: Adam Bolt 16x16 (public domain); David Gervais 32x32 (CC-BY-3.0, credit
-- "David Gervais" wherever samples are shown; tileset='bolt' gives a public-domain-only set).
local ddpm = require 'ddpm'
local F = require 'ddpm.ffi'
local raise = F.raise

local M = {}

M.classes = { 'hero', 'nonhero', 'food', 'spell', 'item' }
M.version = '1:3.5.1-2.5'
local HERO, NONHERO, FOOD, SPELL, ITEM = 0, 1, 2, 3, 4
-- priority when a cell is named by several lines: hero > spell > food > nonhero > item
local priority = { [HERO] = 5, [SPELL] = 4, [FOOD] = 3, [NONHERO] = 2, [ITEM] = 1 }

local sheets = {
  bolt = { png = 'usr/share/angband/xtra/graf/16x16.png', w = 512, h = 960, S = 16, suffix = 'new' },
  gervais = { png = 'usr/share/angband/xtra/graf/32x32.png', w = 4096, h = 960, S = 32, suffix = 'dvg' },
}
local text_files = { 'etc/angband/edit/monster.txt', 'etc/angband/edit/flavor.txt' }
for _, sheet in pairs(sheets) do
  for _, p in ipairs({ 'graf', 'xtra', 'flvr' }) do text_files[#text_files + 1] = 'etc/angband/pref/' .. p .. '-' .. sheet.suffix .. '.prf' end
end

local function exists(path)
  local f = io.open(path, 'rb')
  if f then f:close() return true end
  return false
end

local function has_all(root)
  for _, f in ipairs(text_files) do if not exists(root .. '/' .. f) then return false, f end end
  for _, s in pairs(sheets) do if not exists(root .. '/' .. s.png) then return false, s.png end end
  return true
end

local function sh(cmd)
  local p = io.popen(cmd .. ' 2>&1; echo "rc=$?"')
  local out = p:read('*a')
  p:close()
  local rc = tonumber(out:match('rc=(%d+)%s*$'))
  return rc == 0, out:gsub('rc=%d+%s*$', '')
end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

function M.default_cache_dir()
  local env = os.getenv('DDPM_ANGBAND_CACHE')
  if env and env ~= '' then return env end
  local xdg = os.getenv('XDG_CACHE_HOME')
  local base = (xdg and xdg ~= '') and xdg or ((os.getenv('HOME') or '/tmp') .. '/.cache')
  return base .. '/ddpm-lua/angband'
end

-- The directory holding the package files: opts.root, the installed packages under /, or a
-- dpkg -x copy of `apt-get download` in the cache directory.
function M.find_root(opts)
  opts = opts or {}
  if opts.root then
    local ok, missing = has_all(opts.root)
    if not ok then raise(string.format("angband: root '%s' lacks %s (expected the files of angband/angband-data %s)", opts.root, missing, M.version)) end
    return opts.root
  end
  if has_all('') then return '/' end
  local cache = opts.cache_dir or M.default_cache_dir()
  local root = cache .. '/root'
  if has_all(root) then return root end
  local ok, out = sh('mkdir -p ' .. quote(cache))
  if not ok then raise("angband: cannot create the cache directory '" .. cache .. "': " .. out) end
  -- download and unpack in a private directory, then move the tree into place in one rename, so
  -- processes building at the same time never see a half-unpacked tree
  local tmp
  ok, tmp = sh('mktemp -d ' .. quote(cache .. '/.download-XXXXXX'))
  if not ok then raise("angband: cannot create a temporary directory in '" .. cache .. "': " .. tmp) end
  tmp = tmp:gsub('%s+$', '')
  local function cleanup() sh('rm -rf ' .. quote(tmp)) end
  ok, out = sh('cd ' .. quote(tmp) .. ' && apt-get download angband=' .. M.version .. ' angband-data=' .. M.version)
  if not ok then
    cleanup()
    raise(string.format("angband: `apt-get download angband=%s angband-data=%s` failed (needs network access to " ..
      "a Debian bookworm mirror, and `apt-get update` once; or install the packages, or pass {root=} to a `dpkg -x` copy):\n%s",
      M.version, M.version, out))
  end
  ok, out = sh('cd ' .. quote(tmp) .. ' && for f in *.deb; do dpkg -x "$f" root || exit 1; done')
  if not ok then
    cleanup()
    raise("angband: unpacking the downloaded packages failed: " .. out)
  end
  if not has_all(root) then sh('mv ' .. quote(tmp .. '/root') .. ' ' .. quote(root)) end
  cleanup()
  local okr, missing = has_all(root)
  if not okr then
    raise(string.format("angband: the downloaded packages lack %s; this recipe needs the layout of angband %s (bookworm)", missing, M.version))
  end
  return root
end

local function lines(path)
  local f, err = io.open(path, 'rb')
  if not f then raise('angband: cannot read ' .. tostring(err)) end
  local text = f:read('*a')
  f:close()
  local out = {}
  for line in (text .. '\n'):gmatch('([^\n]*)\n') do
    line = line:gsub('\r$', '')
    if line ~= '' and line:sub(1, 1) ~= '#' then out[#out + 1] = line end
  end
  return out
end

local function split(line)
  local f = {}
  for field in (line .. ':'):gmatch('([^:]*):') do f[#f + 1] = field end
  return f
end

local function parse_monsters(root)
  local types, cur = {}, nil
  for _, l in ipairs(lines(root .. '/etc/angband/edit/monster.txt')) do
    local f = split(l)
    if f[1] == 'N' then
      cur = tonumber(f[2])
    elseif f[1] == 'T' and cur and types[cur] == nil then
      types[cur] = f[2]
    end
  end
  return types
end

local function parse_flavors(root)
  local tval_of, cur = {}, nil
  for _, l in ipairs(lines(root .. '/etc/angband/edit/flavor.txt')) do
    local f = split(l)
    if f[1] == 'kind' then cur = f[2]
    elseif (f[1] == 'flavor' or f[1] == 'fixed') and cur then tval_of[tonumber(f[2])] = cur end
  end
  return tval_of
end

local function hex(s) return s and s:match('^0[xX]%x+$') and tonumber(s:sub(3), 16) or nil end

local flavor_class = { food = FOOD, potion = FOOD, scroll = SPELL, ring = ITEM, amulet = ITEM, wand = ITEM, staff = ITEM, rod = ITEM }
local kind_class = { food = FOOD, ['magic book'] = SPELL, ['prayer book'] = SPELL, scroll = SPELL }

-- References of one sheet: list of {row, col, class, source}
local function references(root, sheet, monsters, flavors)
  local refs = {}
  local function add(f, class, source)
    local a, c = hex(f[#f - 1]), hex(f[#f])
    if not a or not c then return end
    refs[#refs + 1] = { row = a - 0x80, col = c - 0x80, class = class, source = source }
  end
  local pref = root .. '/etc/angband/pref/'
  for _, l in ipairs(lines(pref .. 'graf-' .. sheet.suffix .. '.prf')) do
    local f = split(l)
    if f[1] == 'R' and #f == 4 then
      local idx = tonumber(f[2])
      if idx == 0 then add(f, HERO, 'player')
      elseif idx then add(f, monsters[idx] == 'person' and HERO or NONHERO, 'R:' .. idx .. ':' .. (monsters[idx] or '')) end
    elseif f[1] == 'K' and #f == 5 and f[2] ~= '0' then
      add(f, kind_class[f[2]] or ITEM, 'K:' .. f[2])
    elseif f[1] == 'GF' and #f == 5 then
      add(f, SPELL, 'GF')
    end
  end
  for _, l in ipairs(lines(pref .. 'xtra-' .. sheet.suffix .. '.prf')) do
    local f = split(l)
    if f[1] == 'R' and f[2] == '0' and #f == 4 then add(f, HERO, 'player') end
  end
  for _, l in ipairs(lines(pref .. 'flvr-' .. sheet.suffix .. '.prf')) do
    local f = split(l)
    if f[1] == 'L' and #f == 4 then
      local tval = flavors[tonumber(f[2])]
      if tval and flavor_class[tval] then add(f, flavor_class[tval], 'L:' .. tval) end
    end
  end
  return refs
end

-- Cut, filter, de-duplicate one sheet; returns list of {img uint8 [16,16,3], class, row, col, source}
local function cut_sheet(root, name, sheet, monsters, flavors)
  local png = require 'ddpm.io.png'
  local img = png.load(root .. '/' .. sheet.png, { mode = 'RGBA' })
  if img:size(0) ~= sheet.h or img:size(1) ~= sheet.w then
    raise(string.format('angband: %s is %dx%d, the recipe expects %dx%d (a different package version?)', sheet.png,
      img:size(1), img:size(0), sheet.w, sheet.h))
  end
  local S = sheet.S
  local rows, cols = sheet.h / S, sheet.w / S
  -- opaque-enough pixel count of every cell at once
  local alpha = img:select(2, 3):contiguous():view(rows, S, cols, S):permute(0, 2, 1, 3)
  local counts = alpha:ge(ddpm.full({}, 128, { dtype = ddpm.uint8 })):long():sum({ 2, 3 }):tolist()
  local min_opaque = math.ceil(0.04 * S * S - 1e-9)
  local cells, order = {}, {}
  local refs = references(root, sheet, monsters, flavors)
  for _, r in ipairs(refs) do
    if r.row < 0 or r.row >= rows or r.col < 0 or r.col >= cols then
      raise(string.format('angband: %s references cell (%d, %d) outside the %s sheet', r.source, r.row, r.col, name))
    end
    local key = r.row * cols + r.col
    local c = cells[key]
    if not c then
      cells[key] = { row = r.row, col = r.col, class = r.class, source = r.source }
      order[#order + 1] = key
    elseif priority[r.class] > priority[c.class] then
      c.class, c.source = r.class, r.source
    end
  end
  table.sort(order)
  local kept, seen = {}, {}
  local stats = { references = #refs, distinct = #order, dropped_transparent = 0, dropped_duplicate = 0 }
  for _, key in ipairs(order) do
    local c = cells[key]
    if counts[c.row + 1][c.col + 1] < min_opaque then
      stats.dropped_transparent = stats.dropped_transparent + 1
    else
      local cell = img:narrow(0, c.row * S, S):narrow(1, c.col * S, S)
      local out = png.composite_box(cell, S / 16)
      local bytes = F.ffi.string(ddpm.C.ddpm_tensor_data(out), 16 * 16 * 3)
      if seen[bytes] then
        stats.dropped_duplicate = stats.dropped_duplicate + 1
      else
        seen[bytes] = true
        c.img = out
        kept[#kept + 1] = c
      end
    end
  end
  return kept, stats
end

local function file_names(tileset)
  local tag = tileset == 'both' and '' or (tileset .. '_')
  return 'angband_' .. tag .. 'sprites_16x16.npy', 'angband_' .. tag .. 'labels_nc_16x16.npy', 'angband_' .. tag .. 'index.csv'
end

-- build({tileset='both'|'bolt'|'gervais', cache_dir=, root=, force=false})
--   -> {images = path, labels = path, index = path, counts = {per class}, n = N}
-- Builds once and reuses the cached .npy files afterwards.
function M.build(opts)
  opts = opts or {}
  local tileset = opts.tileset or 'both'
  if tileset ~= 'both' and tileset ~= 'bolt' and tileset ~= 'gervais' then
    raise("angband: tileset must be 'both', 'bolt' or 'gervais', got " .. tostring(tileset))
  end
  local cache = opts.cache_dir or M.default_cache_dir()
  local xn, yn, idxn = file_names(tileset)
  local xp, yp, ip = cache .. '/' .. xn, cache .. '/' .. yn, cache .. '/' .. idxn
  if not opts.force and exists(xp) and exists(yp) then
    return { images = xp, labels = yp, index = ip, cached = true }
  end
  local root = M.find_root({ root = opts.root, cache_dir = cache })
  local monsters, flavors = parse_monsters(root), parse_flavors(root)
  local all, stats = {}, {}
  for _, name in ipairs({ 'bolt', 'gervais' }) do
    if tileset == 'both' or tileset == name then
      local kept, st = cut_sheet(root, name, sheets[name], monsters, flavors)
      stats[name] = st
      for _, c in ipairs(kept) do
        c.tileset = name
        all[#all + 1] = c
      end
    end
  end
  local imgs, cls = {}, {}
  local counts = { 0, 0, 0, 0, 0 }
  local csv = { 'index,class,tileset,row,col,source' }
  for i, c in ipairs(all) do
    imgs[i] = c.img
    cls[i] = c.class
    counts[c.class + 1] = counts[c.class + 1] + 1
    csv[#csv + 1] = string.format('%d,%s,%s,%d,%d,%s', i - 1, M.classes[c.class + 1], c.tileset, c.row, c.col, c.source)
  end
  local X = ddpm.stack(imgs, 0)
  local Y = ddpm.eye(5, { dtype = ddpm.float64 }):index_select(0, ddpm.tensor(cls, { dtype = ddpm.int64 }))
  local ok, err = pcall(function() os.execute('mkdir -p ' .. quote(cache)) end)
  if not ok then raise('angband: cannot create ' .. cache .. ': ' .. tostring(err)) end
  local npy = require 'ddpm.io.npy'
  -- labels first: the images file marks a complete cache
  npy.save(yp, Y)
  require('ddpm.io.atomic').write(ip, table.concat(csv, '\n') .. '\n')
  npy.save(xp, X)
  local by_name = {}
  for k, name in ipairs(M.classes) do by_name[name] = counts[k] end
  return { images = xp, labels = yp, index = ip, counts = by_name, n = #all, stats = stats, cached = false }
end

-- load({tileset=, cache_dir=, ...}) -> NpyImageDataset (float32 [-1, 1] NCHW, one-hot labels)
function M.load(opts)
  local files = M.build(opts)
  local ds = require('ddpm.data.dataset').NpyImageDataset(files.images, files.labels)
  ds.classes = M.classes
  return ds
end

return M
