-- exp_metrics_spec.lua: ddpm.metrics against known cases: the Jacobi eigen-decomposition and the
-- matrix square roots (Jacobi and Newton-Schulz), the Fréchet distance (closed forms for commuting
-- and for 2x2 covariances), the weighted Gaussian statistics, the diversity and accuracy scores, the
-- stratified split, classifier save/load, sample generation and the plot.
local ddpm = require 'ddpm'
local metrics = require 'ddpm.metrics'
local L = metrics.linalg
local tst = require 'ddpm.testing'

local f64 = { dtype = ddpm.float64 }
local function close(a, b, tol, msg)
  assert.is_true(math.abs(a - b) <= (tol or 1e-9) * math.max(1, math.abs(b)), string.format('%s: %.15g vs %.15g', msg or '', a, b))
end

local function random_spd(n, seed, cond)
  local g = ddpm.Generator():manual_seed(seed)
  local X = ddpm.randn({ 3 * n, n }, { generator = g, dtype = ddpm.float64 })
  local A = X:t():matmul(X) / (3 * n)
  if cond then A = A + ddpm.eye(n, n, f64) * cond end
  return A
end

describe('metrics.linalg', function()
  it('eigh finds the eigenpairs of a known 2x2 matrix, ascending', function()
    local w, V = L.eigh(ddpm.tensor({ { 2, 1 }, { 1, 2 } }, f64))
    tst.assert_close(w, ddpm.tensor({ 1, 3 }, f64), { atol = 1e-14, rtol = 0 })
    -- eigenvectors up to sign: (1, -1)/sqrt 2 and (1, 1)/sqrt 2
    local v1, v2 = V:select(1, 0), V:select(1, 1)
    close(math.abs(v1:select(0, 0):item()), 1 / math.sqrt(2), 1e-14)
    close(v1:select(0, 0):item() * v1:select(0, 1):item(), -0.5, 1e-14)
    close(v2:select(0, 0):item() * v2:select(0, 1):item(), 0.5, 1e-14)
  end)

  it('eigh reconstructs a random symmetric matrix with orthonormal eigenvectors', function()
    for _, n in ipairs({ 1, 3, 17, 64 }) do
      local A = random_spd(n, n) - ddpm.eye(n, n, f64) * 0.5 -- indefinite too
      local w, V = L.eigh(A)
      tst.assert_close((V * w:unsqueeze(0)):matmul(V:t()), A, { atol = 1e-12, rtol = 0 })
      tst.assert_close(V:t():matmul(V), ddpm.eye(n, n, f64), { atol = 1e-12, rtol = 0 })
      local wl = w:tolist()
      for i = 2, #wl do assert.is_true(wl[i - 1] <= wl[i]) end
      -- the trace is the sum of the eigenvalues
      close(w:sum():item(), (A * ddpm.eye(n, n, f64)):sum():item(), 1e-12)
    end
  end)

  it('eigh refuses what is not a symmetric matrix', function()
    assert.has_error(function() L.eigh(ddpm.tensor({ { 1, 2 }, { 0, 1 } }, f64)) end)
    local ok, err = pcall(L.eigh, ddpm.zeros(2, 3))
    assert.is_false(ok)
    assert.matches('square matrix %[n, n%], got shape %[2, 3%]', err)
    ok, err = pcall(L.eigh, ddpm.tensor({ { 1, 2 }, { 0, 1 } }, f64))
    assert.matches('not symmetric', err)
  end)

  it('sqrtm_psd is the known square root Q diag(d) Q^T, and Newton-Schulz agrees', function()
    local n = 6
    local _, Q = L.eigh(random_spd(n, 3))
    local d = ddpm.tensor({ 0.5, 1, 2, 3, 4, 9 }, f64)
    local A = (Q * d:square():unsqueeze(0)):matmul(Q:t())
    local R = (Q * d:unsqueeze(0)):matmul(Q:t())
    tst.assert_close(L.sqrtm_psd(A), R, { atol = 1e-12, rtol = 0 })
    tst.assert_close(L.sqrtm_newton_schulz(A), R, { atol = 1e-10, rtol = 0 })
    -- a singular PSD matrix: the zero eigenvalue stays zero
    local S = ddpm.tensor({ { 1, 1 }, { 1, 1 } }, f64)
    tst.assert_close(L.sqrtm_psd(S), S / math.sqrt(2), { atol = 1e-14, rtol = 0 })
    assert.has_error(function() L.sqrtm_psd(ddpm.tensor({ { -1, 0 }, { 0, 1 } }, f64)) end)
  end)

  it('trace_sqrt_product matches closed forms', function()
    -- commuting (diagonal): sum of sqrt(a_i b_i)
    local a, b = ddpm.tensor({ 1, 4, 9 }, f64), ddpm.tensor({ 4, 1, 16 }, f64)
    close(L.trace_sqrt_product(ddpm.eye(3, 3, f64) * a:unsqueeze(0), ddpm.eye(3, 3, f64) * b:unsqueeze(0)), 2 + 2 + 12, 1e-12)
    -- 2x2, not commuting: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) for M = A B with PSD A, B
    local A = ddpm.tensor({ { 2, 1 }, { 1, 3 } }, f64)
    local B = ddpm.tensor({ { 1, -0.5 }, { -0.5, 2 } }, f64)
    local M = A:matmul(B)
    local m = M:tolist()
    local det = m[1][1] * m[2][2] - m[1][2] * m[2][1]
    close(L.trace_sqrt_product(A, B), math.sqrt(m[1][1] + m[2][2] + 2 * math.sqrt(det)), 1e-12)
  end)
end)

describe('metrics: Fréchet distance', function()
  it('is the closed form for Gaussians with commuting covariances, and 0 for equal ones', function()
    local mu1, mu2 = ddpm.tensor({ 0, 1, 2 }, f64), ddpm.tensor({ 1, 1, 0 }, f64)
    local a, b = { 1, 4, 0.25 }, { 9, 1, 1 }
    local S1 = ddpm.eye(3, 3, f64) * ddpm.tensor(a, f64):unsqueeze(0)
    local S2 = ddpm.eye(3, 3, f64) * ddpm.tensor(b, f64):unsqueeze(0)
    local want = 1 + 0 + 4
    for i = 1, 3 do want = want + (math.sqrt(a[i]) - math.sqrt(b[i])) ^ 2 end
    close(metrics.frechet_distance(mu1, S1, mu2, S2), want, 1e-12)
    close(metrics.frechet_distance(mu2, S2, mu1, S1), want, 1e-12)
    local S = random_spd(8, 5)
    local mu = ddpm.randn({ 8 }, f64)
    assert.is_true(metrics.frechet_distance(mu, S, mu, S) < 1e-9)
  end)

  it('matches the 2x2 closed form for non-commuting covariances', function()
    local A = ddpm.tensor({ { 2, 1 }, { 1, 3 } }, f64)
    local B = ddpm.tensor({ { 1, -0.5 }, { -0.5, 2 } }, f64)
    local m = A:matmul(B):tolist()
    local tr_sqrt = math.sqrt(m[1][1] + m[2][2] + 2 * math.sqrt(m[1][1] * m[2][2] - m[1][2] * m[2][1]))
    local want = 0.5 ^ 2 + 5 + 3 - 2 * tr_sqrt
    close(metrics.frechet_distance(ddpm.tensor({ 0.5, 0 }, f64), A, ddpm.zeros(2, f64), B), want, 1e-12)
  end)

  it('refuses statistics of different sizes', function()
    local ok, err = pcall(metrics.frechet_distance, ddpm.zeros(2, f64), ddpm.eye(2, 2, f64), ddpm.zeros(3, f64),
      ddpm.eye(3, 3, f64))
    assert.is_false(ok)
    assert.matches('mismatched statistics', err)
  end)

  it('gaussian_stats is the unbiased covariance; equal weights change nothing', function()
    local X = ddpm.randn({ 50, 4 }, { dtype = ddpm.float64, generator = ddpm.Generator():manual_seed(7) })
    local mu, S = metrics.gaussian_stats(X)
    local Xc = X - X:mean(0):unsqueeze(0)
    tst.assert_close(mu, X:mean(0), { atol = 1e-14, rtol = 0 })
    tst.assert_close(S, Xc:t():matmul(Xc) / 49, { atol = 1e-13, rtol = 0 })
    local mu2, S2 = metrics.gaussian_stats(X, ddpm.full({ 50 }, 3, f64))
    tst.assert_close(mu2, mu, { atol = 1e-14, rtol = 0 })
    tst.assert_close(S2, S, { atol = 1e-13, rtol = 0 })
    -- integer weights are repetitions: weight 2 on a row = the row twice (the mean)
    local Y = X:narrow(0, 0, 5)
    local w = ddpm.tensor({ 2, 1, 1, 1, 1 }, f64)
    local muw = metrics.gaussian_stats(Y, w)
    tst.assert_close(muw, ddpm.cat({ Y:narrow(0, 0, 1), Y }, 0):mean(0), { atol = 1e-14, rtol = 0 })
  end)
end)

-- a stand-in classifier: the features are the mean colour, the logits pick the brightest channel
local stub = {
  config = { num_classes = 3 },
  features = function(_, x) return x:mean({ 2, 3 }) end,
  fc = function(f) return f end,
  eval = function(self) return self end,
  train = function(self) return self end,
}

local function coloured(ids)
  local n = #ids
  local x = ddpm.zeros(n, 3, 4, 4)
  for i, c in ipairs(ids) do x:select(0, i - 1):select(0, c):fill_(1) end
  return x
end

describe('metrics: accuracy and diversity', function()
  it('class_accuracy counts the samples classified as their label, overall and per class', function()
    local images = coloured({ 0, 0, 1, 1, 2, 2 })
    local acc, per = metrics.class_accuracy(stub, images, ddpm.tensor({ 0, 0, 1, 2, 2, 2 }, { dtype = ddpm.int64 }))
    close(acc, 5 / 6, 1e-12)
    close(per[1], 1, 0)
    close(per[2], 1, 0)
    close(per[3], 2 / 3, 1e-12)
    -- one-hot labels work too
    local acc2 = metrics.class_accuracy(stub, images, ddpm.eye(3):index_select(0, ddpm.tensor({ 0, 0, 1, 1, 2, 2 },
      { dtype = ddpm.int64 })))
    close(acc2, 1, 0)
  end)

  it('diversity is the mean pairwise RMS pixel distance (and feature distance) per class', function()
    local images = ddpm.zeros(4, 3, 2, 2)
    images:select(0, 1):fill_(0.5) -- class 0: two images 0.5 apart everywhere
    images:select(0, 2):fill_(0.3)
    images:select(0, 3):fill_(0.3) -- class 1: identical images
    local d = metrics.diversity(images, { 0, 0, 1, 1 }, { classifier = stub })
    close(d.per_class[1].pixel, 0.5, 1e-6)
    close(d.per_class[2].pixel, 0, 1e-6)
    -- the classifier sees [-1, 1]: 0.5 apart in [0, 1] is 1 apart in each of the 3 mean colours
    close(d.per_class[1].feature, math.sqrt(3), 1e-6)
    close(d.pixel, 0.25, 1e-6)
    close(metrics.mean_pairwise_distance(ddpm.tensor({ { 0, 0 }, { 3, 4 }, { 0, 0 } }, f64)), (5 + 5 + 0) * 2 / 6, 1e-12)
  end)

  it('evaluate and reference: generated = real gives Fréchet 0, and the scores of a set', function()
    local ids = { 0, 1, 2, 0, 1, 2, 0, 1, 2 }
    local images = coloured(ids) * 0.8 + ddpm.rand(9, 3, 4, 4) * 0.2
    local ref = metrics.reference(stub, images * 2 - 1, ddpm.tensor(ids, { dtype = ddpm.int64 }))
    local r = metrics.evaluate(stub, images, ddpm.tensor(ids, { dtype = ddpm.int64 }), ref)
    close(r.accuracy, 1, 0)
    assert.is_true(r.frechet < 1e-8)
    assert.is_true(r.diversity.pixel > 0)
    local r2 = metrics.evaluate(stub, images:flip(0), ddpm.tensor(ids, { dtype = ddpm.int64 }), ref)
    assert.is_true(r2.accuracy < 1)
  end)
end)

describe('metrics: the classifier', function()
  it('stratified_split holds out the same share of every class, seeded', function()
    local ids = {}
    for i = 1, 100 do ids[i] = i <= 60 and 0 or (i <= 90 and 1 or 2) end
    local labels = ddpm.tensor(ids, { dtype = ddpm.int64 })
    local tr, he = metrics.stratified_split(labels, 0.2, 3)
    assert.are.equal(100, tr:numel() + he:numel())
    local seen, count = {}, { 0, 0, 0 }
    for _, i in ipairs(tr:tolist()) do seen[i] = 'train' end
    for _, i in ipairs(he:tolist()) do
      assert.is_nil(seen[i])
      count[ids[i + 1] + 1] = count[ids[i + 1] + 1] + 1
    end
    assert.are.same({ 12, 6, 2 }, count)
    local tr2, he2 = metrics.stratified_split(labels, 0.2, 3)
    assert.is_true(ddpm.equal(he, he2) and ddpm.equal(tr, tr2))
    local _, he3 = metrics.stratified_split(labels, 0.2, 4)
    assert.is_false(ddpm.equal(he, he3))
    assert.has_error(function() metrics.stratified_split(labels, 1.5, 0) end)
  end)

  it('saves and loads itself (same outputs), and a missing one is a clear error', function()
    ddpm.manual_seed(1)
    local clf = metrics.SpriteClassifier{ num_classes = 4, width = 8 }
    clf:eval()
    local dir = os.tmpname()
    os.remove(dir)
    metrics.save_classifier(clf, dir, { heldout_accuracy = 0.5, class_names = { 'a', 'b', 'c', 'd' } })
    local back, cfg = metrics.load_classifier(dir)
    assert.are.equal(0.5, cfg.heldout_accuracy)
    assert.are.same({ 'a', 'b', 'c', 'd' }, cfg.class_names)
    local x = ddpm.randn(3, 3, 8, 8)
    tst.assert_close(back(x), clf(x), { atol = 0, rtol = 0 })
    assert.are.same({ 3, 16 }, back:features(x):shape())
    os.execute("rm -rf '" .. dir .. "'")
    local ok, err = pcall(metrics.load_classifier, dir)
    assert.is_false(ok)
    assert.matches('train one with scripts/train_classifier%.lua', err)
  end)
end)

describe('metrics.generate', function()
  it('draws per_class samples of every class in class order, the same for a seed', function()
    ddpm.manual_seed(0)
    local nn = ddpm.nn
    local unet = ddpm.models.UNet2DConditionModel{ sample_size = 8, in_channels = 3, out_channels = 3, layers_per_block = 1,
      block_out_channels = { 8, 16 }, down_block_types = { 'DownBlock2D', 'CrossAttnDownBlock2D' },
      up_block_types = { 'CrossAttnUpBlock2D', 'UpBlock2D' }, norm_num_groups = 4, attention_head_dim = 2,
      cross_attention_dim = 8, encoder_hid_dim = 8 }
    local net = nn.Sequential(nn.Linear(3, 8), nn.Unsqueeze(1))
    local pipe = ddpm.pipelines.ConditionalDDPMPipeline(unet, net, ddpm.schedulers.DDIMScheduler{ num_train_timesteps = 10 })
    local imgs, ids = metrics.generate(pipe, { per_class = 2, num_inference_steps = 2, guidance_scale = 2, seed = 5, batch_size = 4 })
    assert.are.same({ 6, 3, 8, 8 }, imgs:shape())
    assert.are.same({ 0, 0, 1, 1, 2, 2 }, ids:tolist())
    local imgs2 = metrics.generate(pipe, { per_class = 2, num_inference_steps = 2, guidance_scale = 2, seed = 5, batch_size = 4 })
    assert.is_true(ddpm.equal(imgs, imgs2))
    assert.are.same({ 3, 3, 8, 8 }, metrics.grid_subset(imgs, 2, 1):shape())
    assert.has_error(function() metrics.generate(pipe, { per_class = 2, guidance_scale = -1 }) end)
  end)
end)

describe('metrics.plot', function()
  it('draws a chart with its series in their colours, axes and a legend', function()
    local P = metrics.plot
    local img = P.line_chart{ series = { { name = 'a', x = { 1, 2, 4 }, y = { 0.1, 0.5, 0.9 } },
      { name = 'b', x = { 1, 2, 4 }, y = { 0.9, 0.5, 0.1 } } }, title = 'T', ylim = { 0, 1 }, width = 200, height = 150 }
    assert.are.same({ 150, 200, 3 }, img:shape())
    assert.are.equal(ddpm.uint8, img.dtype)
    local function has_colour(im, c)
      local d = (im:float() - ddpm.tensor(c):view(1, 1, 3)):abs():amax(2)
      return d:lt(ddpm.full({}, 2)):any()
    end
    assert.is_true(has_colour(img, P.PALETTE[1]))
    assert.is_true(has_colour(img, P.PALETTE[2]))
    assert.is_false(has_colour(img, P.PALETTE[3]))
    local leg = P.legend({ { name = 'a' }, { name = 'b' } }, 200)
    local fig = P.vstack({ P.hstack({ img, img }), leg })
    assert.are.same({ 150 + leg:size(0), 400, 3 }, fig:shape())
    local t = P.nice_ticks(0.03, 0.97, 5)
    assert.are.same({ 0, 0.2, 0.4, 0.6, 0.8, 1 }, (function()
      local r = {}
      for i, v in ipairs(t) do r[i] = math.floor(v * 10 + 0.5) / 10 end
      return r
    end)())
    assert.has_error(function() P.line_chart{ series = {} } end)
  end)
end)
