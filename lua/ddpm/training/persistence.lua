-- training/persistence.lua: the Trainer's dealings with the disk: the pipeline it trains (with
-- --ema, copies holding the averaged weights), the training state a checkpoint keeps, saving a
-- checkpoint, resuming from one, and sample grids.
local ddpm = require 'ddpm'
local checkpoint = require 'ddpm.training.checkpoint'
local datamod = require 'ddpm.training.data'
local options = require 'ddpm.training.options'
local label_net = require 'ddpm.pipelines.label_net'
local raise = require('ddpm.ffi').raise

local M = {}
local Trainer = {} -- methods, copied into the Trainer class by install()

local function get(args, k, default)
  local v = args and rawget(args, k)
  if v == nil then return default end
  return v
end

local function copy_state(st) return { seed = st.seed, offset = st.offset } end

-- pipeline(scheduler): the models as a sampling pipeline; with --ema, copies holding the averaged
-- weights (what checkpoints store and samples use)
function Trainer:pipeline(scheduler)
  local P = require 'ddpm.pipelines'
  scheduler = scheduler or self.scheduler
  local unet, net = self.unet, self.class_net
  if self.ema then
    local after
    unet, after = self.ema:copy(self.unet, 1)
    if net then net = self.ema:copy(net, after) end
  end
  if self.conditional then
    return P.ConditionalDDPMPipeline(unet, net, scheduler, { class_names = self.data.class_names,
      num_classes = self.data.num_classes })
  end
  return P.DDPMPipeline(unet, scheduler)
end

function Trainer:state()
  local c = self.committed
  return {
    kind = self.kind, step = c.step, epoch = c.epoch, loader = c.loader, generator = c.generator,
    default_generator = c.default_generator, loss_sum = c.loss_sum, loss_n = c.loss_n, scaler = c.scaler,
    optimizer = self.optimizer:state_dict(), args = options.saved_args(self.args),
    data = self.data.fingerprint, class_names = self.data.class_names,
    -- with --ema the pipeline holds the averages: the raw weights being trained go here
    ema = self.ema and self.ema:state() or nil,
    raw = self.ema and { unet = self.unet:state_dict(), class_net = self.class_net and self.class_net:state_dict() } or nil,
  }
end

-- save_checkpoint(): RUN/checkpoint (atomic swap); returns its path
function Trainer:save_checkpoint()
  if not self.out then raise('Trainer: no output directory (args.out)') end
  local path = checkpoint.save(self.out, function(dir)
    self:pipeline():save_pretrained(dir)
    checkpoint.write_state(dir, self:state())
  end)
  self.last_saved_step = self.committed.step
  return path
end

-- resume(ckpt_dir[, state]): weights, optimizer, data position and generators from a checkpoint
function Trainer:resume(dir, state)
  state = state or checkpoint.read_state(dir)
  if state.kind ~= self.kind then
    raise(string.format("checkpoint '%s' is of a %s run, this is a %s one", dir, tostring(state.kind), self.kind))
  end
  local ok, why = datamod.same(self.data.fingerprint, state.data)
  if not ok then raise(string.format("the data differs from the data checkpoint '%s' was trained on: %s", dir, why)) end
  if self.conditional then
    local desc = require('ddpm.io.json').read(dir .. '/' .. label_net.CONFIG_NAME)
    local first = desc.layers and desc.layers[1]
    local w = first and first.in_features
    if w and w ~= self.data.num_classes then
      raise(string.format("the labels have %d columns but the label net of checkpoint '%s' takes %d", self.data.num_classes,
        dir, w))
    end
  end
  if (state.ema ~= nil) ~= (self.ema ~= nil) then
    raise(string.format("checkpoint '%s' was trained %s --ema; resume it %s", dir, state.ema and 'with' or 'without',
      state.ema and 'with --ema' or 'without --ema'))
  end
  local weights = require('ddpm.models.modeling').WEIGHTS_NAME
  local unet_sd = ddpm.load_safetensors(dir .. '/unet/' .. weights)
  local net_sd = self.conditional and ddpm.load_safetensors(dir .. '/' .. label_net.WEIGHTS_NAME) or nil
  if self.ema then
    -- the pipeline's weights are the averages; the trained ones come from the training state
    local pairs_ = { { self.unet, unet_sd } }
    if net_sd then pairs_[2] = { self.class_net, net_sd } end
    self.ema:load(state.ema, pairs_)
    unet_sd, net_sd = state.raw.unet, state.raw.class_net
  end
  self.unet:load_state_dict(unet_sd, { strict = true })
  if net_sd then self.class_net:load_state_dict(net_sd, { strict = true }) end
  self.optimizer:load_state_dict(state.optimizer)
  self.loader:load_state_dict(state.loader)
  if self.scaler and state.scaler then self.scaler:load_state_dict(state.scaler) end
  self.generator:set_state(state.generator)
  ddpm.set_rng_state(state.default_generator)
  self.committed = { step = state.step, epoch = state.epoch, loader = state.loader, generator = copy_state(state.generator),
    default_generator = copy_state(state.default_generator), loss_sum = state.loss_sum, loss_n = state.loss_n,
    scaler = state.scaler }
  self.last_saved_step = state.step
  self.resumed_from = dir
end

-- ---- samples ---------------------------------------------------------------------------------------------
function Trainer:sample_grid(path)
  local a = self.args
  local sched = require('ddpm.training.components').sampling_scheduler(get(a, 'sample_scheduler', 'ddpm'), self.scheduler)
  local steps = get(a, 'sample_steps', 0)
  if steps == 0 then steps = nil end
  local grid = require 'ddpm.pipelines.grid'
  local pipe = self:pipeline(sched)
  -- a generator of its own: sampling never disturbs the training streams
  local g = ddpm.Generator():manual_seed(self.seed)
  local show = self.show_progress and 'sampling' or false
  if self.conditional then
    grid.class_grid(pipe, { path = path, per_class = get(a, 'per_class', 4), guidance_scale = get(a, 'guidance', 1),
      generator = g, num_inference_steps = steps, progress = show, eta = get(a, 'eta', 0),
      cuda_graph = get(a, 'cuda_graphs', true) })
  else
    grid.sample_grid(pipe, { path = path, n = get(a, 'num_samples', 16), generator = g, num_inference_steps = steps,
      progress = show, cuda_graph = get(a, 'cuda_graphs', true) })
  end
  return path
end

-- install(Trainer): add these methods to the Trainer class
function M.install(cls)
  for k, v in pairs(Trainer) do cls[k] = v end
end

return M
