-- e2e_helpers.lua: shared fixtures of the end-to-end specs: tiny models, a tiny labelled data set
-- written as .npy, the options of a tiny training run, temporary directories.
local ddpm = require 'ddpm'
local run = require 'host_run'

local M = {}

M.source = os.getenv('DDPM_SOURCE_DIR') or '.'
M.exe = run.exe
M.q = run.q
M.sh = run.sh
M.read = run.read
M.write = run.write
M.tmpdir = run.tmpdir
M.rmdir = run.rmdir

-- the tiny models: 8x8 images, two resolutions, a few thousand parameters
function M.tiny_unet_config(extra)
  local c = { sample_size = 8, in_channels = 3, out_channels = 3, layers_per_block = 1, block_out_channels = { 8, 16 },
    down_block_types = { 'DownBlock2D', 'CrossAttnDownBlock2D' }, up_block_types = { 'CrossAttnUpBlock2D', 'UpBlock2D' },
    norm_num_groups = 4, attention_head_dim = 2, cross_attention_dim = 8, encoder_hid_dim = 8 }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

function M.tiny_conditional(seed, classes)
  ddpm.manual_seed(seed or 0)
  local nn = ddpm.nn
  local unet = ddpm.models.UNet2DConditionModel(M.tiny_unet_config())
  local net = nn.Sequential(nn.Linear(classes or 5, 8), nn.GELU(), nn.Linear(8, 8), nn.Unsqueeze(1))
  return unet, net
end

function M.tiny_unconditional(seed)
  ddpm.manual_seed(seed or 0)
  return ddpm.models.UNet2DModel{ sample_size = 8, in_channels = 3, out_channels = 3, layers_per_block = 1,
    block_out_channels = { 8, 16 }, down_block_types = { 'DownBlock2D', 'AttnDownBlock2D' },
    up_block_types = { 'AttnUpBlock2D', 'UpBlock2D' }, norm_num_groups = 4, attention_head_dim = 4 }
end

-- write_data(dir, {n=24, classes=5, size=8, label_rows=n, label_cols=classes}) -> images.npy, labels.npy
-- class c is a tinted square on white, so a class is visible and the data is deterministic
function M.write_data(dir, o)
  o = o or {}
  local n, k, s = o.n or 24, o.classes or 5, o.size or 8
  local g = ddpm.Generator():manual_seed(o.seed or 1)
  local idl = {}
  for i = 1, n do idl[i] = (i - 1) % k end
  local ids = ddpm.tensor(idl, { dtype = ddpm.int64 })
  local imgs = ddpm.rand({ n, s, s, 3 }, { generator = g }) * 60 + 180
  local tint = ddpm.rand({ k, 1, 1, 3 }, { generator = g }) * 255
  local sq = ddpm.zeros(1, s, s, 1)
  sq:narrow(1, 2, s - 4):narrow(2, 2, s - 4):fill_(1)
  imgs = imgs * (1 - sq) + tint:index_select(0, ids) * sq
  local images = imgs:clamp(0, 255):byte()
  local rows, cols = o.label_rows or n, o.label_cols or k
  local lab = ddpm.zeros(rows, cols, { dtype = ddpm.float64 })
  for i = 0, rows - 1 do lab:select(0, i):select(0, (i % k) % cols):fill_(1) end
  local ip, lp = dir .. '/images.npy', dir .. '/labels.npy'
  ddpm.io.save_npy(ip, images)
  ddpm.io.save_npy(lp, lab)
  return ip, lp
end

-- the options of a tiny conditional training run (a list of argv words)
M.TINY = { '--channels', '8,16', '--layers-per-block', '1', '--norm-groups', '4', '--attention-heads', '2',
  '--timesteps', '10', '--batch-size', '8', '--no-progress', '--sample-scheduler', 'ddim', '--sample-steps', '3',
  '--threads', '1' }
M.TINY_COND = { '--embed-dim', '8', '--cross-attention-dim', '8', '--per-class', '1' }
M.TINY_UNCOND = { '--num-samples', '4' }

-- words(...): argv words from strings and (nested) lists of them
function M.words(...)
  local r = {}
  local function add(x)
    if type(x) == 'table' then
      for _, w in ipairs(x) do add(w) end
    elseif x ~= nil then
      r[#r + 1] = x
    end
  end
  for i = 1, select('#', ...) do add((select(i, ...))) end
  return r
end

function M.argv(script, ...)
  local a = M.words(...)
  a[0] = script
  return a
end

-- run a script as a subprocess: script path relative to the source tree, argv words
function M.script(name, words, opts)
  local parts = { M.q(M.exe), M.q(M.source .. '/scripts/' .. name) }
  for _, w in ipairs(words) do parts[#parts + 1] = M.q(w) end
  opts = opts or {}
  opts.env = opts.env or { OMP_NUM_THREADS = '1' }
  return M.sh(table.concat(parts, ' '), opts)
end

function M.exists(path)
  local f = io.open(path, 'rb')
  if f then f:close() return true end
  return false
end

function M.png_size(path)
  local img = ddpm.io.load_png(path)
  return img:size(1), img:size(0) -- width, height
end

return M
