-- metrics/scores.lua: scores of generated sprites under the sprite classifier:
--   class_accuracy   share of samples the classifier assigns to the class they were generated for
--                    (does the label steer the sample?), overall and per class
--   diversity        per class, the mean pairwise distance between samples of that class: in pixel
--                    space (root-mean-square difference of two images in [0, 1], so 0..1) and in the
--                    classifier's feature space (Euclidean distance of penultimate features)
--   frechet_distance between Gaussians fitted to the penultimate features of generated and real
--                    images (FID's formula, with the sprite classifier in place of Inception)
-- Images are float [N, 3, H, W] in [0, 1] (what the pipelines return) unless value_range says
-- otherwise ({-1, 1} for the training data); labels are one-hot rows [N, K] or class ids [N].
local ddpm = require 'ddpm'
local T = require 'ddpm.tensor'
local linalg = require 'ddpm.metrics.linalg'
local C = require 'ddpm.metrics.classifier'
local raise = require('ddpm.ffi').raise

local M = {}

local function to_model_range(images, opts)
  local vr = opts and opts.value_range or { 0, 1 }
  local x = images:float()
  if vr[1] == -1 and vr[2] == 1 then return x end
  return (x - vr[1]) * (2 / (vr[2] - vr[1])) - 1
end

local function check_images(images, who)
  T.need_tensor(images, 'images', who)
  if images:dim() ~= 4 then
    raise(string.format('%s: expected images [N, C, H, W], got shape [%s]', who, table.concat(images:shape(), ', ')))
  end
end

-- predict(clf, images, {value_range={0, 1}, batch_size=256}) -> logits float [N, K], features
-- float64 [N, D]; in eval mode without gradients, in batches
function M.predict(clf, images, opts)
  check_images(images, 'metrics.predict')
  opts = opts or {}
  local bs = opts.batch_size or 256
  local x = to_model_range(images, opts)
  local was = clf.training
  clf:eval()
  local logits, feats = {}, {}
  local ok, err = pcall(ddpm.no_grad, function()
    for s = 0, x:size(0) - 1, bs do
      local xb = x:narrow(0, s, math.min(bs, x:size(0) - s))
      local f = clf:features(xb)
      feats[#feats + 1] = f:double()
      logits[#logits + 1] = clf.fc(f)
    end
  end)
  clf:train(was ~= false)
  if not ok then error(err, 0) end
  return ddpm.cat(logits, 0), ddpm.cat(feats, 0)
end

local function ids_of(labels, n, who)
  if type(labels) == 'table' and not T.is_tensor(labels) then labels = ddpm.tensor(labels, { dtype = ddpm.int64 }) end
  T.need_tensor(labels, 'labels', who)
  local ids = C.class_ids(labels)
  if ids:numel() ~= n then raise(string.format('%s: %d labels for %d images', who, ids:numel(), n)) end
  return ids
end

-- accuracy of logits [N, K] against class ids [N] -> overall, per class {[c+1]=...}, predicted ids
local function accuracy(logits, ids)
  local pred = logits:argmax(1)
  local hit = pred:eq(ids):double()
  local k = logits:size(1)
  local per = {}
  local ones = ddpm.ones(ids:numel(), { dtype = ddpm.float64 })
  local counts = ddpm.zeros(k, { dtype = ddpm.float64 }):index_add_(0, ids, ones)
  local hits = ddpm.zeros(k, { dtype = ddpm.float64 }):index_add_(0, ids, hit)
  local cl, hl = counts:tolist(), hits:tolist()
  for c = 1, k do per[c] = cl[c] > 0 and hl[c] / cl[c] or nil end
  return hit:mean():item(), per, pred
end
M.accuracy = accuracy

-- class_accuracy(clf, images, labels, opts) -> accuracy (0..1), per-class accuracies {[c+1]=...},
-- predicted ids
function M.class_accuracy(clf, images, labels, opts)
  local logits = M.predict(clf, images, opts)
  return accuracy(logits, ids_of(labels, images:size(0), 'metrics.class_accuracy'))
end

-- mean pairwise Euclidean distance between the rows of X (float64 [n, d]); nil for n < 2
local function mean_pairwise(X)
  local n = X:size(0)
  if n < 2 then return nil end
  local sq = X:square():sum(1)
  local d2 = sq:unsqueeze(1) + sq:unsqueeze(0) - X:matmul(X:t()) * 2
  -- the diagonal would be zero but for rounding: masked out; the mean over the n (n - 1) ordered pairs
  local off = 1 - ddpm.eye(n, n, { dtype = ddpm.float64 })
  return (d2:clamp(0, math.huge):sqrt() * off):sum():item() / (n * (n - 1))
end
M.mean_pairwise_distance = mean_pairwise

-- diversity(images, labels, {features=float64 [N, D] | classifier=clf, value_range=}) ->
-- {per_class = {[c+1] = {pixel=, feature=, n=}}, pixel=, feature=} (means over the classes)
function M.diversity(images, labels, opts)
  local who = 'metrics.diversity'
  check_images(images, who)
  opts = opts or {}
  local n = images:size(0)
  local ids = ids_of(labels, n, who)
  local feats = opts.features
  if not feats and opts.classifier then
    local _
    _, feats = M.predict(opts.classifier, images, opts)
  end
  local x01 = (to_model_range(images, opts) + 1) * 0.5
  -- RMS distance = Euclidean distance / sqrt(number of values)
  local pix = x01:reshape(n, -1):double()
  local scale = 1 / math.sqrt(pix:size(1))
  local k = ids:max():item() + 1
  local per, sum_p, sum_f, m = {}, 0, 0, 0
  local id_list = ids:tolist()
  for c = 0, k - 1 do
    local rows = {}
    for i, v in ipairs(id_list) do if v == c then rows[#rows + 1] = i - 1 end end
    if #rows >= 2 then
      local idx = ddpm.tensor(rows, { dtype = ddpm.int64 })
      local p = mean_pairwise(pix:index_select(0, idx)) * scale
      local f = feats and mean_pairwise(feats:index_select(0, idx)) or nil
      per[c + 1] = { pixel = p, feature = f, n = #rows }
      sum_p, sum_f, m = sum_p + p, sum_f + (f or 0), m + 1
    end
  end
  return { per_class = per, pixel = m > 0 and sum_p / m or nil, feature = (m > 0 and feats) and sum_f / m or nil }
end

-- gaussian_stats(features [N, D], weights [N] | nil) -> mean float64 [D], covariance float64 [D, D]
-- (unbiased: divided by N - 1, as numpy's cov that FID uses; with weights, the reliability-weighted
-- estimate, which is the same for equal weights)
function M.gaussian_stats(feats, weights)
  T.need_tensor(feats, 'features', 'metrics.gaussian_stats')
  if feats:dim() ~= 2 or feats:size(0) < 2 then
    raise('metrics.gaussian_stats: expected features [N, D] with N >= 2, got shape [' .. table.concat(feats:shape(), ', ') .. ']')
  end
  local X = feats:double()
  local n = X:size(0)
  local w
  if weights then
    w = weights:double():reshape(n)
    w = w / w:sum()
  else
    w = ddpm.full({ n }, 1 / n, { dtype = ddpm.float64 })
  end
  local mu = (X * w:unsqueeze(1)):sum(0)
  local Xc = X - mu:unsqueeze(0)
  local denom = 1 - w:square():sum():item()
  local sigma = (Xc * w:unsqueeze(1)):t():matmul(Xc) / denom
  return mu, (sigma + sigma:t()) * 0.5
end

local function trace(A)
  local n = A:size(0)
  return (A:double() * ddpm.eye(n, n, { dtype = ddpm.float64 })):sum():item()
end

-- frechet_distance(mu1, sigma1, mu2, sigma2) -> ||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrt(S1 S2))
function M.frechet_distance(mu1, s1, mu2, s2)
  T.need_tensor(mu1, 'mu1', 'metrics.frechet_distance')
  if mu1:numel() ~= mu2:numel() or s1:size(0) ~= s2:size(0) or s1:size(0) ~= mu1:numel() then
    raise(string.format('metrics.frechet_distance: mismatched statistics: means [%d] and [%d], covariances [%d, %d] and [%d, %d]',
      mu1:numel(), mu2:numel(), s1:size(0), s1:size(1), s2:size(0), s2:size(1)))
  end
  local d = (mu1:double() - mu2:double()):square():sum():item()
  local tr = trace(s1) + trace(s2)
  local fd = d + tr - 2 * linalg.trace_sqrt_product(s1, s2)
  -- a tiny negative value is rounding
  return math.max(fd, 0)
end

-- frechet_from_features(feats_a, feats_b, {weights_a=, weights_b=})
function M.frechet_from_features(a, b, opts)
  opts = opts or {}
  local mu1, s1 = M.gaussian_stats(a, opts.weights_a)
  local mu2, s2 = M.gaussian_stats(b, opts.weights_b)
  return M.frechet_distance(mu1, s1, mu2, s2)
end

-- reference(clf, images, labels, {value_range={-1, 1}, balanced=true}) -> the real images' feature
-- statistics {mu=, sigma=, n=}; balanced weighs each image by 1 / (count of its class), so a set of
-- samples with equally many per class is compared with a class-balanced real distribution
function M.reference(clf, images, labels, opts)
  opts = opts or {}
  local o = { value_range = opts.value_range or { -1, 1 }, batch_size = opts.batch_size }
  local _, feats = M.predict(clf, images, o)
  local w
  if opts.balanced ~= false and labels then
    w = ddpm.data.class_balanced_weights(labels)
  end
  local mu, sigma = M.gaussian_stats(feats, w)
  return { mu = mu, sigma = sigma, n = images:size(0), features = feats }
end

-- evaluate(clf, images, labels, reference, opts) -> {accuracy=, per_class_accuracy=, diversity=,
-- frechet=}: every score of one set of generated images
function M.evaluate(clf, images, labels, ref, opts)
  opts = opts or {}
  local logits, feats = M.predict(clf, images, opts)
  local ids = ids_of(labels, images:size(0), 'metrics.evaluate')
  local acc, per = accuracy(logits, ids)
  local div = M.diversity(images, ids, { features = feats, value_range = opts.value_range })
  local r = { accuracy = acc, per_class_accuracy = per, diversity = div, n = images:size(0) }
  if ref then
    local mu, sigma = M.gaussian_stats(feats)
    r.frechet = M.frechet_distance(mu, sigma, ref.mu, ref.sigma)
  end
  return r
end

return M
