-- experiments/label_masking.lua: how much label masking does classifier-free guidance need?  Trains
-- the follow-up recipe (scripts/train_better_conditional.lua) once per --mask-probs value, samples
-- every model at every --guidance scale (the all-zero label as the unconditional input), scores
-- the samples with the sprite classifier (scripts/train_classifier.lua; ddpm.metrics: class
-- accuracy, per-class diversity, Fréchet distance of classifier features to the real sprites), and
-- writes OUT/results.csv, OUT/results.md, OUT/plot.png and a sample grid per setting in OUT/grids/.
--   ddpm-lua scripts/experiments/label_masking.lua --quick                 # a few minutes, tiny models
--   ddpm-lua scripts/experiments/label_masking.lua --mask-probs 0,0.05,0.1,0.2 --guidance 1,2,4 --epochs 20
-- Options of the training script given here are passed on to it (--channels, --epochs, --warmup,
-- --label-net, --scheduler, ...).  A run that finished is reused when the same command is run again
-- (an interrupted one is resumed), so a Ctrl-C loses little.
io.stdout:setvbuf('line')
local training = require 'ddpm.training'
local options = training.options
local fs = training.fs
local metrics = ddpm.metrics
local json = require 'ddpm.io.json'
local image = require 'ddpm.utils.image'

local quick = false
for i = 1, #arg do if arg[i] == '--quick' then quick = true end end

-- the follow-up recipe's defaults; --quick shrinks everything to finish in minutes on 2 cores
local defaults = {
  channels = { 64, 128, 256 }, scheduler = 'ddim', timesteps = 1000, optimizer = 'adamw', weight_decay = 1e-4, loss = 'l1',
  balance = true, sample_scheduler = 'ddim', sample_steps = 10, out = 'runs/label_masking',
}
if quick then
  for k, v in pairs({ channels = { 16, 32 }, layers_per_block = 1, norm_groups = 8, attention_heads = 2, embed_dim = 32,
    cross_attention_dim = 32, epochs = 2, batch_size = 64, lr = 2e-3, sample_steps = 5, out = 'runs/label_masking_quick' }) do
    defaults[k] = v
  end
end

-- the shared training options pass through to the training script; these are the experiment's own
local OWN = {
  { '--mask-probs', type = 'numbers', default = quick and { 0, 0.2 } or { 0, 0.05, 0.1, 0.2 }, min = 0, max = 1,
    metavar = 'P', help = 'label masking probabilities to train with, one model each' },
  { '--guidance', type = 'numbers', default = quick and { 1, 3 } or { 1, 2, 4 }, min = 0, metavar = 'G',
    help = 'classifier-free guidance scales to sample every model at' },
  { '--warmup', type = 'integer', default = quick and 1 or 10, min = 0, help = 'epochs before masking starts (the recipe\'s --warmup)' },
  { '--samples-per-class', type = 'integer', default = quick and 8 or 40, min = 2, help = 'generated images per class and setting' },
  { '--grid-per-class', type = 'integer', default = 8, min = 1, help = 'images per class in the sample grids' },
  { '--classifier', metavar = 'DIR', help = 'a trained classifier (train_classifier.lua --out DIR); default: OUT/classifier, trained if missing' },
  { '--classifier-epochs', type = 'integer', default = quick and 2 or 20, min = 1, help = 'epochs of the classifier trained here' },
  { '--eval-batch-size', type = 'integer', default = 100, min = 1, help = 'images per sampling batch' },
  { '--quick', type = 'boolean', help = 'tiny models, few steps and samples: a smoke run of a few minutes' },
}
-- training options that make no sense per model (the experiment decides them)
local NOT_FORWARDED = { out = true, resume = true, overwrite = true, log = true, samples = true, sample_every = true,
  per_class = true, guidance = true, mask_prob = true }

local spec = options.with_extra(options.spec('conditional', defaults), OWN)
options.prog = 'label_masking.lua'
local args = ddpm.cli.parse(arg, { description = 'The label-masking experiment: train with each mask probability, sample at '
  .. 'each guidance scale, score with the sprite classifier.', options = spec, prog = options.prog })
local given = options.explicit(arg, spec)
if args.threads > 0 then ddpm.set_num_threads(args.threads) end
local own = {}
for _, e in ipairs(OWN) do own[e[1]:sub(3):gsub('-', '_')] = true end

local out = args.out
local script_dir = (tostring(arg[0]):match('^(.*)/[^/]*$') or '.') .. '/..'
local exe = os.getenv('DDPM_LUA')
if not exe then
  local lo = 0
  while arg[lo - 1] ~= nil do lo = lo - 1 end
  exe = arg[lo]
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function fmt_num(v) return (string.format('%.10g', v)) end
local function words_of(name, v)
  local flag = '--' .. name:gsub('_', '-')
  if type(v) == 'boolean' then return { v and flag or ('--no-' .. flag:sub(3)) } end
  if type(v) == 'table' then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = type(x) == 'number' and fmt_num(x) or tostring(x) end
    return { flag, table.concat(parts, ',') }
  end
  return { flag, type(v) == 'number' and fmt_num(v) or tostring(v) }
end

-- the training options every model shares: the recipe defaults this experiment changes (--quick) and
-- whatever was given on the command line
local function training_words()
  local w, names = {}, {}
  for _, e in ipairs(options.spec('conditional', defaults)) do
    local dest = e[1]:sub(3):gsub('-', '_')
    if not NOT_FORWARDED[dest] and not own[dest] and (given[dest] or (quick and defaults[dest] ~= nil)) then
      names[#names + 1] = dest
    end
  end
  table.sort(names)
  for _, dest in ipairs(names) do
    local v = rawget(args, dest)
    if v ~= nil then for _, x in ipairs(words_of(dest, v)) do w[#w + 1] = x end end
  end
  for _, x in ipairs({ '--warmup', tostring(args.warmup), '--no-samples' }) do w[#w + 1] = x end
  return w
end

local function run(script, words, log)
  local parts = { q(exe), q(script_dir .. '/' .. script) }
  for _, x in ipairs(words) do parts[#parts + 1] = q(x) end
  local cmd = table.concat(parts, ' ')
  print('$ ' .. table.concat(parts, ' ', 2))
  local code
  if log then
    -- the output goes to the terminal and to the log; the exit status through a file (POSIX sh has
    -- no pipefail).  On Ctrl-C the training script saves a checkpoint and exits 130: the shell
    -- around it catches the signal (a trap with a command is not inherited) to record that status,
    -- and tee ignores it so the script's last lines still have somewhere to go.
    local rc = log .. '.status'
    os.execute(string.format("{ trap : INT; %s; echo $? > %s; } 2>&1 | (trap '' INT; tee %s)", cmd, q(rc), q(log)))
    local f = io.open(rc, 'rb')
    code = f and tonumber(f:read('*a')) or 1
    if f then f:close() end
    os.remove(rc)
  else
    local r = os.execute(cmd)
    code = type(r) == 'number' and (r >= 256 and math.floor(r / 256) or r) or (r and 0 or 1)
  end
  if code == 130 or code == 2 + 128 then
    error({ exit_code = 130, message = 'interrupted: run the same command again to continue where it stopped' }, 0)
  end
  if code ~= 0 then options.fail(string.format('%s failed (exit status %d)%s', script, code, log and ('; see ' .. log) or '')) end
end

-- ---- everything that can fail on bad input, before any work --------------------------------------------
local data, forwarded = options.guard(function()
  local ok, why = fs.writable_dir(out)
  if not ok then error(string.format("--out '%s' cannot be written: %s", out, why), 0) end
  if not exe or exe == '' then error('cannot tell which ddpm-lua runs this script; set DDPM_LUA', 0) end
  if #args.mask_probs == 0 or #args.guidance == 0 then error('--mask-probs and --guidance need at least one value each', 0) end
  -- the trainer refuses this too, but only after the classifier has been trained
  if args.snr_gamma > 0 and args.loss ~= 'mse' then
    error(string.format('--snr-gamma weights the mse loss; it cannot be combined with --loss %s (add --loss mse)', args.loss), 0)
  end
  local d = training.data.load(args, { conditional = true })
  -- the swappable parts are checked here so a bad file fails now, not in the first training run
  local noise = training.components.noise_scheduler(args)
  training.components.sampling_scheduler(args.sample_scheduler, noise)
  training.components.label_net(args, d.num_classes, function(w, dim)
    return ddpm.nn.Sequential(ddpm.nn.Linear(w, dim), ddpm.nn.Unsqueeze(1))
  end)
  if rawget(args, 'classifier') then metrics.load_classifier(args.classifier) end
  return d, training_words()
end)
fs.mkdirs(out .. '/grids')
do
  local words = { 'ddpm-lua', tostring(arg[0]) }
  for i = 1, #arg do words[#words + 1] = arg[i] end
  require('ddpm.io.atomic').write(out .. '/command.txt', table.concat(words, ' ') .. '\n')
end

-- ---- the classifier that scores the samples ------------------------------------------------------------
local clf_dir = rawget(args, 'classifier') or (out .. '/classifier')
if not fs.exists(clf_dir .. '/' .. metrics.classifier.CONFIG_NAME) then
  local w = { '--out', clf_dir, '--epochs', tostring(args.classifier_epochs), '--seed', tostring(args.seed) }
  for _, name in ipairs({ 'data', 'labels', 'class_names', 'image_dir', 'image_size', 'tileset', 'threads', 'progress' }) do
    local v = rawget(args, name)
    if v ~= nil and (given[name] or name == 'progress') then for _, x in ipairs(words_of(name, v)) do w[#w + 1] = x end end
  end
  run('train_classifier.lua', w)
end
local clf, clf_cfg = metrics.load_classifier(clf_dir)
print(string.format('classifier: %s (held-out accuracy %.3f)', clf_dir, clf_cfg.heldout_accuracy or 0 / 0))
local ref = metrics.reference(clf, data.images, data.labels)

-- ---- one model per mask probability -----------------------------------------------------------------------
local function tag(v) return (fmt_num(v):gsub('%.', 'p')) end
local function train(p)
  local dir = string.format('%s/mask_%s', out, tag(p))
  local words = { '--mask-prob', fmt_num(p), '--out', dir }
  for _, x in ipairs(forwarded) do words[#words + 1] = x end
  local key = table.concat(words, ' ')
  local marker = dir .. '/experiment_run.json'
  if fs.exists(marker) and json.read(marker).command == key and training.checkpoint.find(dir) then
    print(string.format('mask probability %g: reusing the finished run in %s', p, dir))
    return dir
  end
  local ckpt = training.checkpoint.find(dir)
  local state = ckpt and training.checkpoint.read_state(ckpt)
  local saved = state and fs.exists(dir .. '/experiment_started.json') and json.read(dir .. '/experiment_started.json')
  if ckpt and saved and saved.command == key then
    run('train_better_conditional.lua', { '--resume', dir, '--no-samples' }, dir .. '/train_output.txt')
  else
    local w = {}
    for _, x in ipairs(words) do w[#w + 1] = x end
    if ckpt then w[#w + 1] = '--overwrite' end
    fs.mkdirs(dir)
    json.write(dir .. '/experiment_started.json', { command = key })
    run('train_better_conditional.lua', w, dir .. '/train_output.txt')
  end
  json.write(marker, { command = key })
  return dir
end

-- ---- sampling and scoring ---------------------------------------------------------------------------------------
local rows = {}
for _, p in ipairs(args.mask_probs) do
  local dir = train(p)
  -- sampling runs where training ran (--device); the classifier scores on the CPU
  local device = rawget(args, 'device')
  local pipe = ddpm.pipelines.load(dir, { device = device ~= nil and device ~= 'cpu' and device or nil })
  pipe.scheduler = training.components.sampling_scheduler(args.sample_scheduler, pipe.scheduler)
  for _, gs in ipairs(args.guidance) do
    local t0 = require('ddpm.utils.term').now()
    local images, ids = metrics.generate(pipe, { per_class = args.samples_per_class, guidance_scale = gs, seed = args.seed,
      num_inference_steps = args.sample_steps > 0 and args.sample_steps or nil, batch_size = args.eval_batch_size })
    images = images:to('cpu')
    local r = metrics.evaluate(clf, images, ids, ref)
    local grid = string.format('%s/grids/mask_%s_guidance_%s.png', out, tag(p), tag(gs))
    image.save_image(metrics.grid_subset(images, args.samples_per_class, args.grid_per_class), grid,
      { nrow = math.min(args.grid_per_class, args.samples_per_class), scale = 4, labels = data.class_names })
    local row = { mask_prob = p, guidance = gs, accuracy = r.accuracy, frechet = r.frechet, pixel_diversity = r.diversity.pixel,
      feature_diversity = r.diversity.feature, per_class_accuracy = r.per_class_accuracy, grid = grid,
      seconds = require('ddpm.utils.term').now() - t0 }
    rows[#rows + 1] = row
    print(string.format('mask %-5g guidance %-4g accuracy %.3f  Fréchet %8.3f  diversity pixel %.3f feature %.3f  (%.0f s)', p, gs,
      row.accuracy, row.frechet, row.pixel_diversity or 0 / 0, row.feature_diversity or 0 / 0, row.seconds))
  end
end

-- ---- results: CSV, Markdown, the plot -----------------------------------------------------------------------------
local names = data.class_names
local csv = { 'mask_prob,guidance,accuracy,frechet,pixel_diversity,feature_diversity' }
for c = 1, #names do csv[1] = csv[1] .. ',accuracy_' .. names[c]:gsub('[^%w]', '_') end
local md = { string.format('| mask prob | guidance | class accuracy | Fréchet distance | diversity (pixels) | diversity (features) | %s |',
  table.concat(names, ' | ')), '|' .. string.rep(' ---: |', 6 + #names) }
for _, r in ipairs(rows) do
  local per = {}
  for c = 1, #names do per[c] = string.format('%.3f', r.per_class_accuracy[c] or 0 / 0) end
  csv[#csv + 1] = string.format('%g,%g,%.4f,%.4f,%.4f,%.4f,%s', r.mask_prob, r.guidance, r.accuracy, r.frechet,
    r.pixel_diversity or 0 / 0, r.feature_diversity or 0 / 0, table.concat(per, ','))
  md[#md + 1] = string.format('| %g | %g | %.3f | %.2f | %.3f | %.3f | %s |', r.mask_prob, r.guidance, r.accuracy, r.frechet,
    r.pixel_diversity or 0 / 0, r.feature_diversity or 0 / 0, table.concat(per, ' | '))
end
require('ddpm.io.atomic').write(out .. '/results.csv', table.concat(csv, '\n') .. '\n')
require('ddpm.io.atomic').write(out .. '/results.md', table.concat(md, '\n') .. '\n')
json.write(out .. '/results.json', { rows = rows, class_names = names, classifier = clf_dir,
  classifier_heldout_accuracy = clf_cfg.heldout_accuracy })

local plot = metrics.plot
local function series(field)
  local s = {}
  for i, p in ipairs(args.mask_probs) do
    local x, y = {}, {}
    for _, r in ipairs(rows) do
      if r.mask_prob == p then x[#x + 1], y[#y + 1] = r.guidance, r[field] end
    end
    s[i] = { name = 'mask ' .. fmt_num(p), x = x, y = y }
  end
  return s
end
local panels = {
  plot.line_chart{ series = series('accuracy'), title = 'CLASS ACCURACY', ylabel = 'accuracy', xlabel = 'guidance scale',
    ylim = { 0, 1 }, xticks = args.guidance },
  plot.line_chart{ series = series('frechet'), title = 'FRECHET DISTANCE', ylabel = 'distance', xlabel = 'guidance scale',
    xticks = args.guidance },
  plot.line_chart{ series = series('feature_diversity'), title = 'DIVERSITY (FEATURES)', ylabel = 'distance',
    xlabel = 'guidance scale', xticks = args.guidance },
}
local legend = {}
for i, p in ipairs(args.mask_probs) do legend[i] = { name = 'mask p = ' .. fmt_num(p) } end
local fig = plot.hstack(panels)
plot.save(plot.vstack({ fig, plot.legend(legend, fig:size(1)) }), out .. '/plot.png')

print(string.format('\n%s\n\nresults: %s/results.csv, %s/results.md\nplot: %s/plot.png\ngrids: %s/grids/', table.concat(md, '\n'),
  out, out, out, out))
