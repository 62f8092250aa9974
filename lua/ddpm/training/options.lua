-- training/options.lua: the command-line options every training script shares (the tutorial's
-- settings as defaults), --resume (the saved run's options come back; only run-control options
-- may change), and the checks that must pass before any training starts.
local ddpm = require 'ddpm'
local fs = require 'ddpm.training.fs'
local checkpoint = require 'ddpm.training.checkpoint'

local M = {}

-- options that may differ when a run is resumed: they steer the run, not what it computes
M.RUN_CONTROL = { epochs = true, max_steps = true, save_every = true, out = true, log = true, sample_every = true,
  progress = true, sample_scheduler = true, sample_steps = true, guidance = true, per_class = true, num_samples = true,
  samples = true, resume = true, overwrite = true, threads = true, device = true, eta = true }

-- spec(kind, defaults) -> a ddpm.cli option list; kind 'conditional' | 'unconditional'
function M.spec(kind, defaults)
  local cond = kind == 'conditional'
  local d = defaults or {}
  local function def(k, v) if d[k] ~= nil then return d[k] end return v end
  local o = {
    -- data
    { '--data', metavar = 'NPY', help = 'images .npy, uint8 [N, H, W, 3] (default: the built-in Angband sprites)' },
    { '--image-dir', metavar = 'DIR', help = 'images as DIR/<class>/*.png instead of .npy' },
    { '--image-size', type = 'integer', default = def('image_size', 16), min = 1, help = 'size --image-dir images are resized to' },
    { '--tileset', choices = { 'both', 'bolt', 'gervais' }, default = def('tileset', 'both'),
      help = 'built-in Angband set: both sheets, or bolt (public domain only) / gervais (CC-BY-3.0)' },
    { '--flip', type = 'boolean', default = def('flip', false), help = 'random horizontal flips (augmentation)' },
    -- model
    { '--channels', type = 'integers', default = def('channels', { 64, 128 }), metavar = 'C',
      help = 'UNet block_out_channels, one per resolution' },
    { '--layers-per-block', type = 'integer', default = def('layers_per_block', 2), min = 1, help = 'UNet layers_per_block' },
    { '--norm-groups', type = 'integer', default = def('norm_groups', 32), min = 1, help = 'UNet norm_num_groups (divides every channel count)' },
    { '--attention-heads', type = 'integer', default = def('attention_heads', 8), min = 1,
      help = cond and 'UNet attention_head_dim (in UNet2DConditionModel: the number of heads)'
        or 'UNet attention_head_dim (in UNet2DModel: channels per head)' },
    -- training
    { '--epochs', type = 'integer', default = def('epochs', 32), min = 1, help = 'passes over the data' },
    { '--batch-size', type = 'integer', default = def('batch_size', 128), min = 1, help = 'images per step' },
    { '--lr', type = 'number', default = def('lr', 1e-4), min = 0, help = 'Adam learning rate' },
    { '--optimizer', choices = { 'adam', 'adamw' }, default = def('optimizer', 'adam'),
      help = 'Adam (the tutorial) or AdamW (decoupled weight decay)' },
    { '--weight-decay', type = 'number', default = def('weight_decay', nil), min = 0,
      help = 'weight decay (default: 0 for adam, 0.01 for adamw, as PyTorch)' },
    { '--lr-schedule', choices = require('ddpm.optim.lr_scheduler').SCHEDULER_NAMES, default = def('lr_schedule', 'constant'),
      help = "learning-rate schedule (diffusers' get_scheduler names)" },
    { '--warmup-steps', type = 'integer', default = def('warmup_steps', 0), min = 0, help = 'learning-rate warm-up steps' },
    { '--timesteps', type = 'integer', default = def('timesteps', 200), min = 1, help = "noise levels (the scheduler's num_train_timesteps)" },
    { '--scheduler', metavar = 'NAME|FILE.lua', default = def('scheduler', 'ddpm'),
      help = 'noise scheduler: ddpm, ddim, dpm, euler_a, or a .lua file returning a scheduler (or a function(config))' },
    { '--prediction-type', choices = { 'epsilon', 'v_prediction', 'sample' }, default = def('prediction_type', 'epsilon'),
      help = 'what the UNet predicts: the noise, the velocity (target scheduler:get_velocity) or the clean image' },
    { '--zero-snr', type = 'boolean', default = def('zero_snr', false),
      help = 'rescale the betas to zero terminal SNR, trailing timestep spacing (needs --prediction-type v_prediction)' },
    { '--loss', choices = require('ddpm.training.losses').names, default = def('loss', 'mse'), help = 'training loss on the noise' },
    { '--snr-gamma', type = 'number', default = def('snr_gamma', 0), min = 0,
      help = 'Min-SNR loss weighting min(SNR, gamma) / SNR (0: off; 5 is usual)' },
    { '--ema', type = 'boolean', default = def('ema', false), help = 'keep an EMA of the weights; samples and checkpoints use it' },
    { '--ema-decay', type = 'number', default = def('ema_decay', 0.9999), min = 0, max = 1, help = 'largest EMA decay (warm-up below it)' },
    { '--seed', type = 'integer', default = def('seed', 0), min = 0, help = 'seed of weights, noise, timesteps and data order' },
    { '--max-steps', type = 'integer', default = def('max_steps', 0), min = 0, help = 'stop after this many steps in all (0: no limit)' },
    { '--device', choices = { 'cpu', 'cuda' }, default = def('device', 'cpu'), help = 'where to train' },
    { '--threads', type = 'integer', default = def('threads', 0), min = 0, help = 'CPU threads (0: the default)' },
    { '--mixed-precision', choices = { 'no', 'bf16', 'fp16' }, default = def('mixed_precision', 'no'),
      help = 'autocast the forward pass and loss (as accelerate): bf16 on CPU or CUDA, fp16 on CUDA with a GradScaler' },
    { '--cuda-graphs', type = 'boolean', default = def('cuda_graphs', true),
      help = 'with --device cuda, replay each training step (forward + backward) and sampling step as a CUDA graph' },
    -- output
    { '--out', metavar = 'DIR', default = def('out', 'runs/' .. kind), help = 'run directory: checkpoint/, samples, log' },
    { '--resume', metavar = 'DIR', help = 'continue the run saved in DIR (a run directory or its checkpoint/)' },
    { '--overwrite', type = 'boolean', help = 'start a new run in an --out that already holds a checkpoint' },
    { '--save-every', type = 'integer', default = def('save_every', 500), min = 0,
      help = 'checkpoint every N steps (0: only at the end and on Ctrl-C)' },
    { '--log', metavar = 'FILE', help = 'per-step log, .csv or .jsonl (default: OUT/train_log.csv)' },
    { '--progress', type = 'boolean', default = def('progress', true), help = 'progress bars' },
    -- samples
    { '--samples', type = 'boolean', default = def('samples', true), help = 'write a sample grid at the end' },
    { '--sample-every', type = 'integer', default = def('sample_every', 0), min = 0, help = 'also a sample grid every N epochs' },
    { '--sample-scheduler', metavar = 'NAME|FILE.lua', default = def('sample_scheduler', 'ddpm'),
      help = 'scheduler for the sample grids: ddpm, ddim, dpm, euler_a or a .lua file (built from the training config)' },
    { '--sample-steps', type = 'integer', default = def('sample_steps', 0), min = 0,
      help = 'sampling steps (0: all timesteps for ddpm, 50 otherwise)' },
  }
  -- the conditional model's extra options, each placed after the option named
  local function after(name, entries)
    for i, e in ipairs(o) do
      if e[1] == name then
        for j, x in ipairs(entries) do table.insert(o, i + j, x) end
        return
      end
    end
    o[#o + 1] = entries[1]
  end
  if cond then
    after('--data', {
      { '--labels', metavar = 'NPY', help = 'one-hot labels .npy [N, classes] for --data' },
      { '--class-names', type = 'strings', metavar = 'NAME', help = 'class names for the grid rows (with --data)' },
    })
    after('--attention-heads', {
      { '--embed-dim', type = 'integer', default = def('embed_dim', 64), min = 1, help = 'label net width = UNet encoder_hid_dim' },
      { '--cross-attention-dim', type = 'integer', default = def('cross_attention_dim', 1280), min = 1,
        help = 'UNet cross_attention_dim (diffusers default 1280)' },
      { '--label-net', metavar = 'FILE.lua', default = def('label_net', nil),
        help = 'label net from a .lua file returning a module or a function(label_width, embed_dim) -> module' },
    })
    after('--flip', {
      { '--balance', type = 'boolean', default = def('balance', false),
        help = 'draw every class equally often (WeightedRandomSampler over 1/class count)' },
    })
    after('--loss', {
      { '--label-dropout', type = 'number', default = def('label_dropout', 0), min = 0, max = 1,
        help = 'probability of training on the all-zero label (enables --guidance)' },
    })
    after('--sample-steps', {
      { '--guidance', type = 'number', default = def('guidance', 1), min = 0,
        help = 'classifier-free guidance scale of the sample grids' },
      { '--per-class', type = 'integer', default = def('per_class', 4), min = 1, help = 'samples per class in the grids' },
    })
  else
    o[#o + 1] = { '--num-samples', type = 'integer', default = def('num_samples', 16), min = 1, help = 'images in the sample grids' }
  end
  return o
end

-- with_extra(spec, extra): a script's own options added to the shared ones; an entry whose first
-- name is a shared option's replaces it (same place in --help)
function M.with_extra(spec, extra)
  for _, x in ipairs(extra or {}) do
    local replaced = false
    for i, e in ipairs(spec) do
      if e[1] == x[1] then
        spec[i], replaced = x, true
        break
      end
    end
    if not replaced then spec[#spec + 1] = x end
  end
  return spec
end

-- subset(kind, names, defaults): the shared entries with these names (a script that needs only
-- some, e.g. the data options of train_classifier.lua)
function M.subset(kind, list, defaults)
  local want, r = {}, {}
  for _, n in ipairs(list) do want[n] = true end
  for _, e in ipairs(M.spec(kind, defaults)) do
    if want[e[1]] then r[#r + 1] = e end
  end
  return r
end

-- option names given on the command line (their dest names), to tell them from defaults
local function explicit(argv, spec)
  local by_name = {}
  for _, e in ipairs(spec) do
    local dest
    for _, n in ipairs(e) do
      if type(n) == 'string' and n:sub(1, 2) == '--' then dest = dest or n:sub(3):gsub('-', '_') end
    end
    for _, n in ipairs(e) do if type(n) == 'string' then by_name[n] = e.dest or dest end end
  end
  local given = {}
  for i = 1, #argv do
    local tok = tostring(argv[i])
    if tok == '--' then break end
    local name = tok:match('^(%-%-?[^=]+)')
    if name and not tonumber(tok) then
      local dest = by_name[name] or (name:sub(1, 5) == '--no-' and by_name['--' .. name:sub(6)])
      if dest then given[dest] = true end
    end
  end
  return given
end

M.explicit = explicit

-- fail(msg): stop the script before training, with the message and a non-zero status
function M.fail(msg, code)
  error({ exit_code = code or 1, message = (M.prog or 'train') .. ': error: ' .. msg }, 0)
end

-- guard(fn, ...): run setup code; an error becomes "prog: error: message" and exit status 1
-- instead of a traceback (usage errors and --help pass through as ddpm.cli raised them)
function M.guard(fn, ...)
  local res = { pcall(fn, ...) }
  if res[1] then return unpack(res, 2) end
  local err = res[2]
  if type(err) == 'table' and err.exit_code then error(err, 0) end
  local msg = tostring(err):gsub('^[^\n]-:%d+: ', '')
  M.fail(msg)
end

local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= 'table' then return a == b end
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local function show(v)
  if type(v) == 'table' then return table.concat(v, ',') end
  return tostring(v)
end

-- parse(argv, {kind=, description=, defaults=, extra={option entries}}) -> args (with
-- args.resume_dir set when resuming)
function M.parse(argv, o)
  local kind = o.kind or 'conditional'
  local spec = M.with_extra(M.spec(kind, o.defaults), o.extra)
  M.prog = tostring(argv[0] or ('train_' .. kind .. '.lua')):match('[^/]*$')
  local args = ddpm.cli.parse(argv, { description = o.description, options = spec, prog = M.prog })
  local given = explicit(argv, spec)
  rawset(args, 'given', given)
  rawset(args, 'resume_dir', false) -- set below when resuming (false, not nil: args is strict)
  rawset(args, 'resume_state', false)
  if rawget(args, 'resume') then
    local ckpt, why = checkpoint.find(args.resume)
    if not ckpt then M.fail('--resume: ' .. why) end
    local state = M.guard(checkpoint.read_state, ckpt)
    if state.kind ~= kind then
      M.fail(string.format("--resume: '%s' is a checkpoint of a %s run, not a %s one", ckpt, tostring(state.kind), kind))
    end
    -- every option comes back from the saved run; run-control options may be overridden on the
    -- command line, the others must not differ (they decide what the run computes)
    local saved = state.args or {}
    for k, v in pairs(saved) do
      if k ~= 'given' and k ~= 'out' then
        if given[k] then
          if not M.RUN_CONTROL[k] and not same(rawget(args, k), v) then
            M.fail(string.format("--resume continues the saved run, which used --%s %s (got %s); drop the option, or start "
              .. 'a new run with another --out', k:gsub('_', '-'), show(v), show(rawget(args, k))))
          end
        else
          rawset(args, k, v)
        end
      end
    end
    if not given.out then rawset(args, 'out', checkpoint.run_dir_of(ckpt)) end
    rawset(args, 'resume_dir', ckpt)
    rawset(args, 'resume_state', state)
  end
  M.check_output(args)
  return args
end

-- the run directory must be writable, and a new run must not overwrite another run's checkpoint
function M.check_output(args)
  local out = args.out
  local ok, why = fs.writable_dir(out)
  if not ok then M.fail(string.format("--out '%s' cannot be written: %s", out, why)) end
  if not rawget(args, 'resume') and not rawget(args, 'overwrite') then
    local ckpt = checkpoint.find(out)
    if ckpt then
      M.fail(string.format("'%s' already holds a checkpoint; continue it with --resume %s, or pass --overwrite "
        .. 'to start a new run there, or choose another --out', out, out))
    end
  end
  local log = rawget(args, 'log')
  if log then
    local dir = fs.dirname(log)
    local okl, whyl = fs.writable_dir(dir)
    if not okl then M.fail(string.format("--log '%s' cannot be written: %s", log, whyl)) end
  end
end

-- the settings saved with a checkpoint: every option except the resume bookkeeping
function M.saved_args(args)
  local r = {}
  for k, v in pairs(args) do
    if k ~= 'given' and k ~= 'resume_state' and k ~= 'resume_dir' and k ~= 'resume' then
      if type(v) == 'table' then
        local c = {}
        for i, x in ipairs(v) do c[i] = x end
        v = c
      end
      r[k] = v
    end
  end
  return r
end

return M
