-- metrics/classifier.lua: the small CNN that scores generated sprites (scripts/train_classifier.lua
-- trains it): three 3x3 convolutions (the last two with stride 2), each followed by GroupNorm and
-- SiLU, a global mean over the pixels (the penultimate features, 2 * width of them, which the
-- Fréchet distance compares) and a linear layer to the class logits.  Inputs are images in [-1, 1],
-- [B, 3, H, W], as the training data; any H, W.  Saved as classifier.safetensors + classifier.json.
local ddpm = require 'ddpm'
local nn = require 'ddpm.nn'
local json = require 'ddpm.io.json'
local raise = require('ddpm.ffi').raise

local M = {}

M.WEIGHTS_NAME = 'classifier.safetensors'
M.CONFIG_NAME = 'classifier.json'

local SpriteClassifier = nn.class('SpriteClassifier')

-- SpriteClassifier{num_classes=5, in_channels=3, width=32, groups=8, dropout=0.1}
function SpriteClassifier:__init(cfg)
  nn.Module.__init(self)
  if type(cfg) ~= 'table' then raise('SpriteClassifier: expected a config table {num_classes=, width=}') end
  local k = cfg.num_classes
  if type(k) ~= 'number' or k < 2 or k ~= math.floor(k) then
    raise('SpriteClassifier: num_classes must be an integer >= 2, got ' .. tostring(k))
  end
  local w = cfg.width or 32
  local g = cfg.groups or 8
  if w % g ~= 0 then raise(string.format('SpriteClassifier: width (%d) must be divisible by groups (%d)', w, g)) end
  self.config = { num_classes = k, in_channels = cfg.in_channels or 3, width = w, groups = g, dropout = cfg.dropout or 0.1 }
  local c = self.config
  self.conv1 = nn.Conv2d(c.in_channels, w, 3, { padding = 1 })
  self.norm1 = nn.GroupNorm(g, w)
  self.conv2 = nn.Conv2d(w, 2 * w, 3, { stride = 2, padding = 1 })
  self.norm2 = nn.GroupNorm(g, 2 * w)
  self.conv3 = nn.Conv2d(2 * w, 2 * w, 3, { stride = 2, padding = 1 })
  self.norm3 = nn.GroupNorm(g, 2 * w)
  self.dropout = nn.Dropout(c.dropout)
  self.fc = nn.Linear(2 * w, k)
  self.feature_dim = 2 * w
end

-- features(x) -> [B, 2 * width]: the penultimate layer
function SpriteClassifier:features(x)
  local F = nn.functional
  local h = F.silu(self.norm1(self.conv1(x)))
  h = F.silu(self.norm2(self.conv2(h)))
  h = F.silu(self.norm3(self.conv3(h)))
  return h:mean({ 2, 3 })
end

function SpriteClassifier:forward(x)
  return self.fc(self.dropout(self:features(x)))
end

M.SpriteClassifier = SpriteClassifier

-- save(clf, dir, extra): the weights and the config (+ extra fields: class names, accuracy, split)
function M.save(clf, dir, extra)
  require('ddpm.training.fs').mkdirs(dir)
  local cfg = {}
  for k, v in pairs(clf.config) do cfg[k] = v end
  for k, v in pairs(extra or {}) do cfg[k] = v end
  cfg._class_name = 'SpriteClassifier'
  cfg.value_range = { -1, 1 }
  ddpm.save_safetensors(dir .. '/' .. M.WEIGHTS_NAME, clf:state_dict(), { format = 'pt' })
  json.write(dir .. '/' .. M.CONFIG_NAME, cfg)
end

-- load(dir) -> classifier (eval mode), its config table
function M.load(dir)
  if type(dir) ~= 'string' then raise('metrics.load_classifier: expected a directory path') end
  local cpath = dir .. '/' .. M.CONFIG_NAME
  local f = io.open(cpath, 'rb')
  if not f then
    raise(string.format("metrics.load_classifier: no %s in '%s' (train one with scripts/train_classifier.lua --out %s)",
      M.CONFIG_NAME, dir, dir))
  end
  f:close()
  local cfg = json.read(cpath)
  if cfg._class_name ~= 'SpriteClassifier' then
    raise(string.format("metrics.load_classifier: %s describes a '%s', expected a SpriteClassifier", cpath, tostring(cfg._class_name)))
  end
  local clf = SpriteClassifier(cfg)
  clf:load_state_dict(ddpm.load_safetensors(dir .. '/' .. M.WEIGHTS_NAME), { strict = true })
  clf:eval()
  return clf, cfg
end

-- class ids [N] (int64) from one-hot rows [N, K] or ids
function M.class_ids(labels)
  if labels:dim() == 2 then return labels:argmax(1) end
  return labels:long()
end

-- stratified_split(labels, fraction, seed) -> train indices, held-out indices (int64, ascending):
-- in every class, round(fraction * count) images (at least one when the class has two or more)
-- chosen by a seeded permutation are held out
function M.stratified_split(labels, fraction, seed)
  if type(fraction) ~= 'number' or fraction <= 0 or fraction >= 1 then
    raise('stratified_split: the held-out fraction must be in (0, 1), got ' .. tostring(fraction))
  end
  local ids = M.class_ids(labels):tolist()
  local by_class, classes = {}, {}
  for i, c in ipairs(ids) do
    if not by_class[c] then
      by_class[c] = {}
      classes[#classes + 1] = c
    end
    local l = by_class[c]
    l[#l + 1] = i - 1
  end
  table.sort(classes)
  local g = ddpm.Generator():manual_seed(seed or 0)
  local train, held = {}, {}
  for _, c in ipairs(classes) do
    local members = by_class[c]
    local n = #members
    local k = math.floor(fraction * n + 0.5)
    if n >= 2 then k = math.max(1, math.min(n - 1, k)) else k = 0 end
    local perm = ddpm.randperm(n, { generator = g }):tolist()
    for j, p in ipairs(perm) do
      local idx = members[p + 1]
      if j <= k then held[#held + 1] = idx else train[#train + 1] = idx end
    end
  end
  table.sort(train)
  table.sort(held)
  return ddpm.tensor(train, { dtype = ddpm.int64 }), ddpm.tensor(held, { dtype = ddpm.int64 })
end

return M
