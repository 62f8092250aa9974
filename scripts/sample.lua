-- sample.lua: the tutorial's sample sheet from a trained model: per-class samples, one labelled row
-- per class, enlarged with nearest-neighbour, as a PNG (an unconditional model gives a square grid).
--   ddpm-lua scripts/sample.lua --checkpoint runs/conditional --per-class 4 --steps 200 --out grid.png
--   ddpm-lua scripts/sample.lua --checkpoint runs/conditional --scheduler ddim --steps 50 --guidance 2
local training = require 'ddpm.training'
local options = training.options
local fs = training.fs

local args = ddpm.cli.parse(arg, {
  description = 'Sample a grid of sprites from a checkpoint (a training run directory or a pipeline directory).',
  options = {
    { '--checkpoint', required = true, metavar = 'DIR', help = 'run directory (its checkpoint/) or pipeline directory' },
    { '--out', default = 'samples.png', metavar = 'PNG', help = 'the grid image to write' },
    { '--per-class', type = 'integer', default = 4, min = 1, help = 'samples per class (one row per class)' },
    { '--classes', type = 'strings', metavar = 'CLASS', help = 'only these classes (names or ids; default: all)' },
    { '--num-samples', type = 'integer', default = 16, min = 1, help = 'images, for an unconditional model' },
    { '--steps', type = 'integer', default = 0, min = 0, help = 'sampling steps (0: all timesteps for ddpm, 50 otherwise)' },
    { '--scheduler', metavar = 'NAME|FILE.lua', default = 'saved',
      help = "the sampler: saved (the checkpoint's own), ddpm, ddim, dpm, euler_a, or a .lua file returning a scheduler "
        .. '(or a function(config), given the checkpoint\'s scheduler config)' },
    { '--guidance', type = 'number', default = 1, min = 0,
      help = 'classifier-free guidance scale (> 1 needs --label-dropout training)' },
    { '--eta', type = 'number', default = 0, min = 0, help = 'DDIM eta (0: deterministic)' },
    { '--clip-sample', choices = { 'saved', 'true', 'false' }, default = 'saved',
      help = "clip each step's x0 prediction to [-1, 1] (saved: as the checkpoint's config; DDIM from a DDPM config clips)" },
    { '--seed', type = 'integer', default = 0, min = 0, help = 'seed of the initial noise and sampling noise' },
    { '--scale', type = 'integer', default = 8, min = 1, help = 'nearest-neighbour enlargement of each image' },
    { '--device', choices = { 'cpu', 'cuda' }, default = 'cpu' },
    { '--cuda-graphs', type = 'boolean', default = true,
      help = "with --device cuda, replay each step's model call as a CUDA graph (--no-cuda-graphs: eager)" },
    { '--progress', type = 'boolean', default = true, help = 'progress bar' },
  },
})
options.prog = 'sample.lua'

local pipe, classes, credit = options.guard(function()
  local dir = fs.dirname(args.out)
  local ok, why = fs.writable_dir(dir)
  if not ok then error(string.format("--out '%s' cannot be written: %s", args.out, why), 0) end
  if args.device ~= 'cpu' then
    local okc, cuda = pcall(require, 'ddpm.cuda')
    if not (okc and cuda.is_available and cuda.is_available()) then error('--device cuda: CUDA is not available', 0) end
  end
  local p = ddpm.pipelines.load(args.checkpoint, { device = args.device ~= 'cpu' and args.device or nil })
  p.scheduler = training.components.sampling_scheduler(args.scheduler, p.scheduler, '--scheduler')
  -- diffusers' DDIM keeps the model's epsilon after clipping x0, so clipping pulls its steps off the
  -- trajectory; the tutorial's DDPMScheduler config (clip_sample=true) passes that on to DDIM
  if args.clip_sample ~= 'saved' and p.scheduler.config.clip_sample ~= nil then
    p.scheduler.config.clip_sample = args.clip_sample == 'true'
  end
  -- the run's options say which data it saw, for the tile credit
  local ckpt = training.checkpoint.find(args.checkpoint)
  local run = ckpt and training.checkpoint.read_state(ckpt).args or nil
  local angband = run and not run.data and not run.image_dir
  local cls
  if args.classes then
    if not p.num_classes then error('--classes: this is an unconditional model', 0) end
    cls = {}
    for i, c in ipairs(args.classes) do
      local id = tonumber(c)
      if not id and p.class_names then
        for k, name in ipairs(p.class_names) do if name == c then id = k - 1 end end
      end
      if not id or id < 0 or id >= p.num_classes or id ~= math.floor(id) then
        error(string.format("--classes: unknown class '%s' (known: %s)", c,
          p.class_names and table.concat(p.class_names, ', ') or ('0..' .. (p.num_classes - 1))), 0)
      end
      cls[i] = id
    end
  end
  return p, cls, angband and (run.tileset == 'bolt' and 'Angband tiles by Adam Bolt (public domain)'
    or 'Angband tiles by David Gervais (CC-BY-3.0) and Adam Bolt (public domain)') or nil
end)

local grid = require 'ddpm.pipelines.grid'
local g = ddpm.Generator():manual_seed(args.seed)
local steps = args.steps > 0 and args.steps or nil
local img
if pipe.num_classes then
  img = grid.class_grid(pipe, { path = args.out, per_class = args.per_class, classes = classes, generator = g,
    num_inference_steps = steps, guidance_scale = args.guidance, eta = args.eta, scale = args.scale,
    progress = args.progress, cuda_graph = args.cuda_graphs })
else
  img = grid.sample_grid(pipe, { path = args.out, n = args.num_samples, generator = g, num_inference_steps = steps,
    eta = args.eta, scale = args.scale, progress = args.progress, cuda_graph = args.cuda_graphs })
end
print(string.format('%s: %dx%d, %s, %d steps%s', args.out, img:size(1), img:size(0), pipe.scheduler.name,
  pipe.scheduler.num_inference_steps, args.guidance > 1 and string.format(', guidance %g', args.guidance) or ''))
if credit then print('samples of a model trained on ' .. credit) end
