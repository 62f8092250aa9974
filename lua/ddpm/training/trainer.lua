-- training/trainer.lua: the diffusion training loop every training script shares (the tutorial's
-- loop: random noise and timesteps, add_noise, predict, loss, Adam step), with what a real run
-- needs around it: a progress bar per epoch, the mean loss per epoch, a per-step log, periodic and
-- final checkpoints, --resume that continues bit for bit, Ctrl-C that saves and exits, samples.
--
--   local trainer = ddpm.training.Trainer{unet = unet, class_net = class_net, scheduler = noise_scheduler,
--     data = data, args = args}         -- data from ddpm.training.data.load, args from options.parse
--   trainer:fit()
--
-- Exact resumption rests on one idea: after each optimizer step the trainer "commits" a small
-- snapshot (step, epoch, data-loader position and generator states, the running loss); the
-- parameters and optimizer state change only inside the optimizer's single fused C call.  A
-- checkpoint is the parameters + optimizer state + the last snapshot, so it is consistent even when
-- Ctrl-C lands in the middle of a step.
local ddpm = require 'ddpm'
local losses = require 'ddpm.training.losses'
local checkpoint = require 'ddpm.training.checkpoint'
local metrics_log = require 'ddpm.training.metrics_log'
local options = require 'ddpm.training.options'
local components = require 'ddpm.training.components'
local label_net = require 'ddpm.pipelines.label_net'
local progress = require 'ddpm.utils.progress'
local term = require 'ddpm.utils.term'
local cuda_graphs = require 'ddpm.utils.cuda_graphs'
local raise = require('ddpm.ffi').raise

local Trainer = {}
Trainer.__index = Trainer

local function get(args, k, default)
  local v = args and rawget(args, k)
  if v == nil then return default end
  return v
end

-- Trainer{unet=, class_net=(conditional), scheduler=, data=, args=, loss=, optimizer=, sampler=, on_epoch=, print=}
--   sampler: the DataLoader's sampler (default: shuffled, or class-balanced with --balanced)
--   on_epoch(trainer, epoch): called before each epoch's first batch (also for the epoch a resumed
--     run continues), e.g. to freeze the label net or change trainer.label_dropout after a warm-up
function Trainer.new(cfg)
  local self = setmetatable({}, Trainer)
  if type(cfg) ~= 'table' then raise('Trainer: expected a table {unet=, scheduler=, data=, args=}') end
  self.unet = cfg.unet or raise('Trainer: unet is required')
  self.class_net = cfg.class_net
  self.conditional = cfg.class_net ~= nil
  self.kind = self.conditional and 'conditional' or 'unconditional'
  self.scheduler = cfg.scheduler or raise('Trainer: scheduler (the noise scheduler) is required')
  self.data = cfg.data or raise('Trainer: data is required (ddpm.training.data.load)')
  local a = cfg.args or {}
  self.args = a
  -- lines appear at once also when stdout is a file (a log of a long run)
  self.print = cfg.print or function(s)
    io.stdout:write(s, '\n')
    io.stdout:flush()
  end
  self.loss_fn = losses.get(cfg.loss or get(a, 'loss', 'mse'))
  if cfg.loss == nil and get(a, 'snr_gamma', 0) > 0 then
    if get(a, 'loss', 'mse') ~= 'mse' then raise('--snr-gamma weights the mse loss; it cannot be combined with --loss ' .. a.loss) end
    self.loss_fn = losses.min_snr(self.scheduler, a.snr_gamma)
  end
  self.device = get(a, 'device', 'cpu')
  self.epochs = get(a, 'epochs', 1)
  self.batch_size = get(a, 'batch_size', 128)
  self.max_steps = get(a, 'max_steps', 0)
  self.save_every = get(a, 'save_every', 0)
  self.sample_every = get(a, 'sample_every', 0)
  self.label_dropout = get(a, 'label_dropout', 0)
  self.out = get(a, 'out', nil)
  self.show_progress = get(a, 'progress', true)
  self.seed = get(a, 'seed', 0)
  if self.conditional then
    local w = label_net.input_width(self.class_net)
    local k = self.data.num_classes
    if not k then raise('Trainer: a conditional model needs labelled data') end
    if w and w ~= k then
      raise(string.format('the labels have %d columns (classes) but the label net takes %d (its first layer is Linear(%d, ...)); '
        .. 'build it with nn.Linear(%d, ...)', k, w, w, k))
    end
  end
  if self.device ~= 'cpu' then
    local ok, cuda = pcall(require, 'ddpm.cuda')
    if not (ok and cuda.is_available and cuda.is_available()) then
      raise("--device cuda: CUDA is not available in this build or on this machine; use --device cpu")
    end
    self.unet:to(self.device)
    if self.class_net then self.class_net:to(self.device) end
  end
  -- one generator for the training noise, timesteps and label dropout; another for the data order
  -- and augmentation: both saved in checkpoints
  self.generator = ddpm.Generator():manual_seed(self.seed * 2 + 1)
  self.loader_generator = ddpm.Generator():manual_seed(self.seed * 2 + 2)
  local transform
  if get(a, 'flip', false) then transform = ddpm.data.RandomHorizontalFlip(0.5) end
  local sampler = cfg.sampler
  if not sampler and get(a, 'balance', false) then
    if not self.data.labels then raise('--balance needs labelled data') end
    -- an epoch is still N draws, with every class equally likely (rare classes repeat)
    sampler = ddpm.data.WeightedRandomSampler(ddpm.data.class_balanced_weights(self.data.labels), self.data.n)
  end
  self.loader = ddpm.data.DataLoader(self.data.dataset, { batch_size = self.batch_size, shuffle = sampler == nil,
    sampler = sampler, generator = self.loader_generator, transform = transform,
    device = self.device ~= 'cpu' and self.device or nil })
  self.on_epoch = cfg.on_epoch
  self.params = self.unet:parameters()
  if self.class_net then for _, p in ipairs(self.class_net:parameters()) do self.params[#self.params + 1] = p end end
  self.optimizer = cfg.optimizer or components.optimizer(a, self.params)
  self.optimizer_name = cfg.optimizer and 'optimizer' or components.optimizer_name(a)
  if get(a, 'samples', false) or get(a, 'sample_every', 0) > 0 then
    -- a bad --sample-scheduler fails now, not after the training
    components.sampling_scheduler(get(a, 'sample_scheduler', 'ddpm'), self.scheduler)
  end
  -- the schedule spans --epochs; --max-steps only stops early, so a run cut short and resumed
  -- follows the same learning rates as an uninterrupted one
  local total = self.epochs * #self.loader
  self.lr_schedule = ddpm.optim.get_scheduler(get(a, 'lr_schedule', 'constant'), self.optimizer,
    { num_warmup_steps = get(a, 'warmup_steps', 0), num_training_steps = total })
  self:_pick_witnesses()
  if get(a, 'ema', false) then
    self.ema = require('ddpm.training.ema').new(self.params, { decay = get(a, 'ema_decay', 0.9999) })
  end
  -- mixed precision as accelerate's --mixed_precision: the forward pass and loss under autocast,
  -- float32 master weights; float16 gradients need loss scaling, bfloat16 ones do not
  local mp = get(a, 'mixed_precision', 'no')
  if mp == 'fp16' and self.device == 'cpu' then
    raise('--mixed-precision fp16 needs --device cuda (the CPU autocast type is bf16: use --mixed-precision bf16)')
  end
  if mp == 'bf16' then self.amp_dtype = ddpm.bfloat16 elseif mp == 'fp16' then self.amp_dtype = ddpm.float16 end
  if mp == 'fp16' then self.scaler = ddpm.amp.GradScaler() end
  self.graphs = cuda_graphs.wanted(get(a, 'cuda_graphs', true), self.device) and
    cuda_graphs.step(function(images, labels)
      self.optimizer:zero_grad({ set_to_none = false })
      return self:_forward_backward(images, labels)
    end, 'training') or nil
  self.committed = { step = 0, epoch = -1, loader = self.loader:state_dict(), generator = self.generator:get_state(),
    default_generator = ddpm.get_rng_state(), loss_sum = 0, loss_n = 0 }
  self.phase = 'idle'
  self.last_saved_step = -1
  return self
end

-- the smallest trainable parameters, compared after an interrupted optimizer step to learn whether
-- its fused update ran (see _settle); picked again when on_epoch freezes or unfreezes some
function Trainer:_pick_witnesses()
  local order = {}
  for _, p in ipairs(self.params) do
    if p.requires_grad then order[#order + 1] = p end
  end
  if #order == 0 then for i, p in ipairs(self.params) do order[i] = p end end
  table.sort(order, function(x, y) return x:numel() < y:numel() end)
  self._witness = { order[1], order[2], order[3] }
  self._witness_idx = {}
  for i, p in ipairs(self.params) do
    for k, w in ipairs(self._witness) do if p == w then self._witness_idx[k] = i end end
  end
end

-- ---- one step --------------------------------------------------------------------------------------------
-- loss(images, labels): forward pass and loss of one batch, drawing noise and timesteps (and label
-- dropout) from the trainer's generator
function Trainer:compute_loss(images, labels)
  local g, s = self.generator, self.scheduler
  local B = images:size(0)
  local dev = images.device
  local noise = ddpm.randn(images:shape(), { generator = g, dtype = images.dtype, device = dev })
  local timesteps = ddpm.randint(0, s.config.num_train_timesteps, { B }, { generator = g, device = dev })
  local noisy = s:add_noise(images, noise, timesteps)
  local pred
  if self.conditional then
    if self.label_dropout > 0 then
      -- classifier-free guidance training: some labels become the all-zero "unconditional" label
      local keep = ddpm.rand(B, { generator = g, device = dev }):ge(ddpm.full({}, self.label_dropout, { device = dev }))
      labels = labels * keep:view(B, 1):to(labels.dtype)
    end
    pred = self.unet(noisy, timesteps, self.class_net(labels)).sample
  else
    pred = self.unet(noisy, timesteps).sample
  end
  local target = losses.target(s, images, noise, timesteps)
  return self.loss_fn(pred, target, { images = images, labels = labels, timesteps = timesteps, noise = noise })
end

-- forward (under autocast with --mixed-precision), loss, backward (of the scaled loss with fp16);
-- returns the unscaled loss tensor
function Trainer:_forward_backward(images, labels)
  local loss
  if self.amp_dtype then
    loss = ddpm.autocast(self.device, { dtype = self.amp_dtype }, function() return self:compute_loss(images, labels):float() end)
  else
    loss = self:compute_loss(images, labels)
  end
  local scaled = self.scaler and self.scaler:scale(loss) or loss
  scaled:backward()
  return loss
end

-- the loss tensor of one step, gradients in .grad: replayed as a CUDA graph for full batches when
-- graphs are on, eagerly otherwise.  A graph bakes in the control flow and Lua numbers of its
-- capture, so its key holds everything that changes them: batch size, label dropout (changed by
-- on_epoch after a warm-up), which parameters train (a frozen label net), the loss scale.
function Trainer:_loss_and_grads(images, labels)
  local gr = self.graphs
  if gr and images:size(0) == self.batch_size then
    local frozen = {}
    for i, p in ipairs(self.params) do frozen[i] = p.requires_grad and '1' or '0' end
    local key = string.format('%d/%.17g/%s/%.17g', images:size(0), self.label_dropout, table.concat(frozen),
      self.scaler and self.scaler:get_scale() or 1)
    local loss = gr:run(key, labels and { images, labels } or { images })
    if loss then return loss end
  end
  self.optimizer:zero_grad()
  return self:_forward_backward(images, labels)
end

function Trainer:_commit(loss_value)
  local prev = self.committed
  local snap = {
    step = prev.step + 1, epoch = self.loader.epoch, loader = self.loader:state_dict(),
    generator = self.generator:get_state(), default_generator = ddpm.get_rng_state(),
    loss_sum = prev.loss_sum + loss_value, loss_n = prev.loss_n + 1,
    scaler = self.scaler and self.scaler:state_dict() or nil,
  }
  self.committed = snap
end

-- train_step(images, labels) -> loss (a number); one optimizer step, then a commit
function Trainer:train_step(images, labels)
  self.phase = 'compute'
  -- the learning rate is a function of the step number (no schedule state to drift)
  self.lr_schedule.last_epoch = self.committed.step - 1
  self.lr_schedule:step()
  local loss = self:_loss_and_grads(images, labels)
  local l = loss:item()
  self._pending_loss = l
  local w = self._witness
  self._witness_before = { w[1]:detach():clone(), w[2] and w[2]:detach():clone(), w[3] and w[3]:detach():clone() }
  self._step_before = self.committed.step
  if self.ema then self.ema:mark(self._witness_idx) end
  self.phase = 'update'
  if self.scaler then
    -- a step with inf/NaN gradients is skipped (parameters unchanged) and the scale backs off
    self.scaler:step(self.optimizer)
    self.scaler:update()
  else
    self.optimizer:step()
  end
  if self.ema then self.ema:step(self.params) end
  self:_commit(l)
  self.phase = 'idle'
  return l
end

-- ---- Ctrl-C ----------------------------------------------------------------------------------------------
-- Bring the state back to a step boundary.  Only the optimizer's fused C call changes parameters
-- (and then the EMA's), and no interrupt can land inside a C call; an interrupt in the Lua around
-- them leaves either the old parameters (roll back: the committed snapshot stands) or the new ones
-- (finish the bookkeeping and the EMA update, and commit).
function Trainer:_settle()
  if self.phase ~= 'update' then return end
  local ran = false
  for i, p in ipairs(self._witness) do
    local before = self._witness_before[i]
    if before and not ddpm.equal(before, p:detach()) then ran = true end
  end
  local lo, hi
  for _, st in pairs(self.optimizer.state) do
    if type(st.step) == 'number' then
      lo, hi = math.min(lo or st.step, st.step), math.max(hi or st.step, st.step)
    end
  end
  for _, st in pairs(self.optimizer.state) do
    if type(st.step) == 'number' then st.step = ran and hi or lo end
  end
  if ran and self.committed.step == self._step_before then
    -- the loss scale's update belongs to the step: finish it if the interrupt came first
    if self.scaler and next(self.scaler._per_optimizer) ~= nil then self.scaler:update() end
    if self.ema then self.ema:settle(self.params) end
    self:_commit(self._pending_loss)
  end
  self.phase = 'idle'
end

local function is_interrupt(err)
  return type(err) == 'string' and err:match('interrupted!%s*$') ~= nil
end
Trainer.is_interrupt = is_interrupt

-- ---- the loop --------------------------------------------------------------------------------------------
local function next_epoch(c, nb)
  if c.epoch < 0 or c.loader.position >= nb then return c.epoch + 1, 0 end
  return c.epoch, c.loader.position
end

function Trainer:_done()
  local nb = #self.loader
  local e = next_epoch(self.committed, nb)
  if e >= self.epochs then return true end
  return self.max_steps > 0 and self.committed.step >= self.max_steps
end

function Trainer:_loop()
  local nb = #self.loader
  while not self:_done() do
    local epoch, start = next_epoch(self.committed, nb)
    if start == 0 then
      self.committed.loss_sum, self.committed.loss_n = 0, 0
    end
    if self.on_epoch then
      self:on_epoch(epoch)
      self:_pick_witnesses()
    end
    local bar = progress(nil, { total = nb - start, unit = 'batch', disable = not self.show_progress,
      desc = string.format('epoch %d/%d%s', epoch + 1, self.epochs, start > 0 and string.format(' (from batch %d)', start) or '') })
    local stopped = false
    for images, labels in self.loader:iter() do
      local t0 = term.now()
      local l = self:train_step(images, labels)
      local dt = term.now() - t0
      local c = self.committed
      local lr = self.optimizer.param_groups[1].lr
      if self.log then
        self.log:row({ step = c.step, epoch = epoch, loss = l, lr = lr, images_per_s = dt > 0 and images:size(0) / dt or nil })
        self._logged_step = c.step
      end
      bar:set_postfix(string.format('loss=%.4f, lr=%.3g', c.loss_sum / c.loss_n, lr), false)
      bar:update(1)
      if self.save_every > 0 and c.step % self.save_every == 0 then self:save_checkpoint() end
      if self.max_steps > 0 and c.step >= self.max_steps then
        stopped = true
        break
      end
    end
    bar:close()
    local c = self.committed
    if not stopped or c.loader.position >= nb then
      self.print(string.format('Finished epoch %d. Average loss for this epoch: %.6f', epoch, c.loss_sum / math.max(c.loss_n, 1)))
      if self.sample_every > 0 and (epoch + 1) % self.sample_every == 0 and self.out then
        local p = self:sample_grid(string.format('%s/samples_epoch%03d.png', self.out, epoch + 1))
        self.print('samples: ' .. p)
      end
    end
    if stopped then break end
  end
end

-- fit(): train to --epochs / --max-steps, save the final checkpoint; on Ctrl-C save and exit 130
function Trainer:fit()
  if self.out then
    self.log = metrics_log.open(get(self.args, 'log', nil) or (self.out .. '/train_log.csv'),
      { resume_step = self.resumed_from and self.committed.step or nil })
  end
  self.started = term.now()
  self._logged_step = self.committed.step
  local ok, err = pcall(self._loop, self)
  if not ok then
    if is_interrupt(err) then
      self:_settle()
      if self.log then
        -- a step the interrupt caught between its update and its log row still gets its row
        local c = self.committed
        if c.step > (self._logged_step or c.step) then
          self.log:row({ step = c.step, epoch = c.epoch, loss = self._pending_loss, lr = self.optimizer.param_groups[1].lr })
        end
        self.log:close()
      end
      if not self.out then error(err, 0) end
      local path = self:save_checkpoint()
      error({ exit_code = 130, message = string.format('\ninterrupted at step %d: checkpoint saved to %s\ncontinue with --resume %s',
        self.committed.step, path, self.out) }, 0)
    end
    if self.log then self.log:close() end
    error(err, 0)
  end
  if self.log then self.log:close() end
  if self.out and self.last_saved_step ~= self.committed.step then self:save_checkpoint() end
  return self.committed
end

-- ---- what scripts print before and after ------------------------------------------------------------
function Trainer:summary()
  local d = self.data
  local nparams = 0
  for _, p in ipairs(self.params) do nparams = nparams + p:numel() end
  local lines = {
    string.format('data: %s, %d images%s', d.source, d.n, d.class_names and (' in ' .. #d.class_names .. ' classes (' ..
      table.concat(d.class_names, ', ') .. ')') or ''),
    string.format('model: %s%s, %d parameters; %s', require('ddpm.class').typename(self.unet),
      self.class_net and ' + label net' or '', nparams, tostring(self.scheduler):match('^[^(]*') ..
      '(num_train_timesteps=' .. self.scheduler.config.num_train_timesteps .. ')'),
    string.format('training: %d epoch%s x %d batches of %d%s, %s lr %g, on %s', self.epochs, self.epochs == 1 and '' or 's', #self.loader, self.batch_size,
      self.max_steps > 0 and (', at most ' .. self.max_steps .. (self.max_steps == 1 and ' step' or ' steps')) or '',
      self.optimizer_name, get(self.args, 'lr', 1e-4), self.device),
  }
  local extras = {}
  local a = self.args
  if get(a, 'lr_schedule', 'constant') ~= 'constant' then
    extras[#extras + 1] = a.lr_schedule .. ' schedule' .. (get(a, 'warmup_steps', 0) > 0 and (' after ' .. a.warmup_steps .. ' warm-up steps') or '')
  end
  if get(a, 'flip', false) then extras[#extras + 1] = 'flips' end
  if get(a, 'balance', false) then extras[#extras + 1] = 'class-balanced' end
  if self.label_dropout > 0 then extras[#extras + 1] = 'label dropout ' .. self.label_dropout end
  if get(a, 'snr_gamma', 0) > 0 then extras[#extras + 1] = 'Min-SNR gamma ' .. a.snr_gamma end
  if self.ema then extras[#extras + 1] = 'EMA' end
  if self.amp_dtype then extras[#extras + 1] = 'mixed precision ' .. a.mixed_precision end
  if self.graphs and self.device ~= 'cpu' then extras[#extras + 1] = 'CUDA graphs' end
  if #extras > 0 then lines[#lines] = lines[#lines] .. '; ' .. table.concat(extras, ', ') end
  if self.resumed_from then
    lines[#lines + 1] = string.format('resuming from %s at step %d', self.resumed_from, self.committed.step)
  end
  if self.out then lines[#lines + 1] = 'output: ' .. self.out end
  return table.concat(lines, '\n')
end

-- finish(): after fit(), the sample grid (unless --no-samples) and where everything is
function Trainer:finish()
  local lines = {}
  if self.out then
    lines[#lines + 1] = string.format('checkpoint: %s/%s (step %d)', self.out, checkpoint.DIR_NAME, self.committed.step)
    if get(self.args, 'samples', true) then
      local path = self:sample_grid(self.out .. '/samples.png')
      lines[#lines + 1] = 'samples: ' .. path
    end
  end
  if #lines > 0 then self.print(table.concat(lines, '\n')) end
end

-- checkpoints, resuming, pipelines and sample grids: training/persistence.lua
require('ddpm.training.persistence').install(Trainer)

local M = {}
M.Trainer = setmetatable({ new = Trainer.new, class = Trainer }, { __call = function(_, cfg) return Trainer.new(cfg) end })
M.class = Trainer
return M
