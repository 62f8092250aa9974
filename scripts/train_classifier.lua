-- train_classifier.lua: the sprite classifier that scores generated samples (ddpm.metrics): a small
-- CNN trained by the engine on the same data as the diffusion models, with a stratified, seeded
-- held-out split; reports the held-out accuracy (overall and per class) and saves itself as
-- OUT/classifier.safetensors + OUT/classifier.json.
--   ddpm-lua scripts/train_classifier.lua                          # built-in sprites -> runs/classifier
--   ddpm-lua scripts/train_classifier.lua --data x.npy --labels y.npy --out runs/clf --epochs 30
io.stdout:setvbuf('line')
local training = require 'ddpm.training'
local options = training.options
local metrics = ddpm.metrics
local F = ddpm.nn.functional
local progress = require 'ddpm.utils.progress'

local spec = options.subset('conditional', { '--data', '--labels', '--class-names', '--image-dir', '--image-size', '--tileset' })
for _, e in ipairs({
  { '--epochs', type = 'integer', default = 20, min = 1, help = 'passes over the training part' },
  { '--batch-size', type = 'integer', default = 64, min = 1, help = 'images per step' },
  { '--lr', type = 'number', default = 2e-3, min = 0, help = 'AdamW learning rate (cosine decay to 0)' },
  { '--weight-decay', type = 'number', default = 1e-4, min = 0, help = 'AdamW weight decay' },
  { '--width', type = 'integer', default = 32, min = 8, help = 'channels of the first convolution (features: 2 x width)' },
  { '--holdout', type = 'number', default = 0.2, min = 0.01, max = 0.9, help = 'held-out share of every class' },
  { '--flip', type = 'boolean', default = true, help = 'random horizontal flips of the training batches' },
  { '--balance', type = 'boolean', default = true,
    help = 'class-balanced sampling, so the small classes are learned too (the samples scored are balanced)' },
  { '--seed', type = 'integer', default = 0, min = 0, help = 'seed of the split, the weights and the data order' },
  { '--max-steps', type = 'integer', default = 0, min = 0, help = 'stop after this many steps (0: no limit)' },
  { '--threads', type = 'integer', default = 0, min = 0, help = 'CPU threads (0: the default)' },
  { '--out', metavar = 'DIR', default = 'runs/classifier', help = 'where classifier.safetensors/.json go' },
  { '--progress', type = 'boolean', default = true, help = 'progress bars' },
}) do spec[#spec + 1] = e end

options.prog = 'train_classifier.lua'
local args = ddpm.cli.parse(arg, { description = 'Train the sprite classifier that scores generated samples (ddpm.metrics).',
  options = spec, prog = options.prog })
if args.threads > 0 then ddpm.set_num_threads(args.threads) end

local data, train_idx, held_idx = options.guard(function()
  local fs = training.fs
  local ok, why = fs.writable_dir(args.out)
  if not ok then error(string.format("--out '%s' cannot be written: %s", args.out, why), 0) end
  local d = training.data.load(args, { conditional = true })
  if d.num_classes < 2 then error('the classifier needs at least two classes', 0) end
  local tr, he = metrics.stratified_split(d.labels, args.holdout, args.seed)
  if he:numel() == 0 then error('--holdout leaves no held-out images (every class has fewer than two)', 0) end
  return d, tr, he
end)

ddpm.manual_seed(args.seed)
local ids = metrics.classifier.class_ids(data.labels)
local train_set = ddpm.data.TensorDataset(data.images:index_select(0, train_idx), ids:index_select(0, train_idx))
local held_images, held_ids = data.images:index_select(0, held_idx), ids:index_select(0, held_idx)
local g = ddpm.Generator():manual_seed(args.seed + 1)
local sampler = args.balance and ddpm.data.WeightedRandomSampler(ddpm.data.class_balanced_weights(
  ids:index_select(0, train_idx)), train_idx:numel()) or nil
local loader = ddpm.data.DataLoader(train_set, { batch_size = args.batch_size, shuffle = sampler == nil, sampler = sampler,
  generator = g, transform = args.flip and ddpm.data.RandomHorizontalFlip(0.5) or nil })
local clf = metrics.SpriteClassifier{ num_classes = data.num_classes, width = args.width }
local opt = ddpm.optim.AdamW(clf:parameters(), { lr = args.lr, weight_decay = args.weight_decay })
local total = args.epochs * #loader
local sched = ddpm.optim.get_scheduler('cosine', opt, { num_warmup_steps = math.min(20, math.floor(total / 10)),
  num_training_steps = total })

print(string.format('data: %s, %d images in %d classes; %d for training, %d held out (%g of each class, seed %d)',
  data.source, data.n, data.num_classes, train_idx:numel(), held_idx:numel(), args.holdout, args.seed))
local nparams = 0
for _, p in ipairs(clf:parameters()) do nparams = nparams + p:numel() end
print(string.format('model: SpriteClassifier(width=%d), %d parameters, %d features; AdamW lr %g, %d epochs x %d batches',
  args.width, nparams, clf.feature_dim, args.lr, args.epochs, #loader))

local function held_out_accuracy()
  local logits = metrics.predict(clf, held_images, { value_range = { -1, 1 } })
  return metrics.accuracy(logits, held_ids)
end

local step, acc, per = 0, nil, nil
for epoch = 1, args.epochs do
  clf:train()
  local bar = progress(#loader, { desc = string.format('epoch %d/%d', epoch, args.epochs), unit = 'batch',
    disable = not args.progress })
  local loss_sum, n = 0, 0
  for images, labels in loader:iter() do
    opt:zero_grad()
    local loss = F.cross_entropy(clf(images), labels)
    loss:backward()
    opt:step()
    sched:step()
    step = step + 1
    loss_sum, n = loss_sum + loss:item(), n + 1
    bar:set_postfix(string.format('loss=%.4f', loss_sum / n), false)
    bar:update(1)
    if args.max_steps > 0 and step >= args.max_steps then break end
  end
  bar:close()
  acc, per = held_out_accuracy()
  print(string.format('epoch %d: training loss %.4f, held-out accuracy %.4f', epoch, loss_sum / math.max(n, 1), acc))
  if args.max_steps > 0 and step >= args.max_steps then break end
end

local per_named = {}
for c = 1, data.num_classes do
  per_named[#per_named + 1] = string.format('%s %.3f', data.class_names[c], per[c] or 0)
end
print(string.format('held-out accuracy: %.4f (%s)', acc, table.concat(per_named, ', ')))
local per_list = {}
for c = 1, data.num_classes do per_list[c] = per[c] or 0 end
metrics.save_classifier(clf, args.out, {
  class_names = data.class_names, heldout_accuracy = acc, heldout_per_class = per_list, data = data.source,
  image_size = data.sample_size, split = { fraction = args.holdout, seed = args.seed, n_train = train_idx:numel(),
    n_heldout = held_idx:numel() }, steps = step,
})
print(string.format('saved: %s/%s and %s', args.out, metrics.classifier.WEIGHTS_NAME, metrics.classifier.CONFIG_NAME))
