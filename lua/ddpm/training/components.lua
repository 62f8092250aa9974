-- training/components.lua: the parts of a run its options swap without recompiling or editing the
-- script: the noise scheduler (--scheduler ddpm|ddim|dpm|euler_a|FILE.lua, with --prediction-type
-- and --zero-snr), the sampling scheduler of the grids (--sample-scheduler), the label net
-- (--label-net FILE.lua) and the optimizer (--optimizer adam|adamw, --weight-decay).  Each is built
-- and checked here, before training starts, so a bad one fails with a clear message.
--
-- Contracts (docs/experiments.md):
--   scheduler file: returns a scheduler, or function(config) -> scheduler, where config is a
--     diffusers scheduler config table (training: {num_train_timesteps=--timesteps,
--     prediction_type=, rescale_betas_zero_snr=, timestep_spacing=}; sampling: the trained model's
--     scheduler config).  A scheduler has config.num_train_timesteps, add_noise, set_timesteps, step.
--   label-net file: returns a module, or function(label_width, embed_dim) -> module; the module maps
--     float labels [B, label_width] (one-hot rows; the all-zero row is the "no label" input of label
--     masking and guidance) to encoder_hidden_states [B, tokens, embed_dim].
local ddpm = require 'ddpm'
local lua_file = require 'ddpm.pipelines.lua_file'
local raise = require('ddpm.ffi').raise

local M = {}

M.SCHEDULER_NAMES = { 'ddpm', 'ddim', 'dpm', 'euler_a' }

local function get(args, k, default)
  local v = args and rawget(args, k)
  if v == nil then return default end
  return v
end

local function names() return table.concat(M.SCHEDULER_NAMES, ', ') end

-- the noise schedule the options ask for, as a diffusers config table
function M.scheduler_config(args)
  local cfg = { num_train_timesteps = get(args, 'timesteps', 1000), prediction_type = get(args, 'prediction_type', 'epsilon') }
  if get(args, 'zero_snr', false) then
    -- zero terminal SNR (Lin et al. 2024): the last timestep is pure noise, and sampling must start
    -- there, which 'trailing' spacing does
    cfg.rescale_betas_zero_snr = true
    cfg.timestep_spacing = 'trailing'
  end
  return cfg
end

-- the checkpoint's copy of a component file when resuming (the run continues with the code it ran)
local function saved_source(args, rel)
  local dir = get(args, 'resume_dir', false)
  if not dir then return nil end
  return lua_file.read(dir .. '/' .. rel), dir .. '/' .. rel
end

-- scheduler_by_name(name_or_path, config, what): a built-in scheduler from a config, or a file's
function M.scheduler_by_name(name, config, what)
  what = what or '--scheduler'
  if lua_file.is_lua_path(name) then return lua_file.scheduler(name, config, what) end
  local known = false
  for _, n in ipairs(M.SCHEDULER_NAMES) do if n == name then known = true end end
  if not known then
    raise(string.format("%s: unknown scheduler '%s'; expected one of %s, or the path of a .lua file returning a scheduler",
      what, tostring(name), names()))
  end
  return ddpm.schedulers.get(name).from_config(config)
end

-- noise_scheduler(args) -> the training noise scheduler (--scheduler, default ddpm)
function M.noise_scheduler(args)
  local name = get(args, 'scheduler', 'ddpm')
  local cfg = M.scheduler_config(args)
  local pt = cfg.prediction_type
  if cfg.rescale_betas_zero_snr and pt == 'epsilon' then
    raise('--zero-snr needs --prediction-type v_prediction (or sample): at zero terminal SNR the last timestep is pure noise, '
      .. 'so a noise prediction says nothing about the image there')
  end
  local s
  if lua_file.is_lua_path(name) then
    local src, where = saved_source(args, 'scheduler/scheduler.lua')
    if src then
      s = lua_file.check_scheduler(lua_file.build(src, where, { cfg }, '--scheduler', name), '--scheduler')
    else
      s = lua_file.scheduler(name, cfg, '--scheduler')
    end
  else
    s = M.scheduler_by_name(name, cfg, '--scheduler')
  end
  local spt = type(s.config) == 'table' and s.config.prediction_type or 'epsilon'
  if get(args, 'given', {}).prediction_type and spt ~= pt then
    raise(string.format("--prediction-type %s: the scheduler from '%s' predicts '%s'; build it from the config it is given",
      pt, name, tostring(spt)))
  end
  return s
end

-- sampling_scheduler(name, noise_scheduler) -> a scheduler for sampling a model trained with
-- noise_scheduler: a built-in one from its config ('saved' or nil: that scheduler itself), or a file's
function M.sampling_scheduler(name, noise_scheduler, what)
  if name == nil or name == 'saved' then return noise_scheduler end
  return M.scheduler_by_name(name, noise_scheduler.config, what or '--sample-scheduler')
end

-- check_label_net(net, label_width, embed_dim, what): one forward pass on a dummy batch (a one-hot
-- row and the all-zero row) in eval mode, without gradients, must give [2, tokens, embed_dim]
function M.check_label_net(net, label_width, embed_dim, what)
  what = what or '--label-net'
  if type(net) ~= 'table' or type(net.forward) ~= 'function' or type(net.parameters) ~= 'function' then
    raise(string.format('%s: expected a module (an nn.Module such as nn.Sequential(...)) or a function(label_width, embed_dim) '
      .. 'returning one, got a %s', what, type(net)))
  end
  local labels = ddpm.zeros(2, label_width)
  labels:select(0, 0):select(0, 0):fill_(1)
  local was = net.training
  net:eval()
  local ok, out = pcall(function() return ddpm.no_grad(function() return net(labels) end) end)
  net:train(was ~= false)
  if not ok then
    raise(string.format('%s: the label net fails on a batch of labels [2, %d]: %s', what, label_width,
      tostring(out):gsub('^[^\n]-:%d+: ', '')))
  end
  local T = require 'ddpm.tensor'
  if not T.is_tensor(out) then
    raise(string.format('%s: the label net returned a %s; expected encoder_hidden_states, a float tensor [B, tokens, %d]', what,
      type(out), embed_dim))
  end
  local shape = table.concat(out:shape(), ', ')
  if out:dim() ~= 3 or out:size(0) ~= 2 or out:size(2) ~= embed_dim or not out:is_floating_point() then
    raise(string.format('%s: the label net maps labels [2, %d] to [%s] (%s); expected [2, tokens, %d] (embed_dim = the UNet\'s '
      .. 'encoder_hid_dim, --embed-dim)', what, label_width, shape, tostring(out.dtype), embed_dim))
  end
  return net
end

-- label_net(args, label_width, default) -> the label net: --label-net FILE.lua, or default(label_width,
-- embed_dim) (the script's own); checked with one forward pass either way
function M.label_net(args, label_width, default)
  local embed = get(args, 'embed_dim', 64)
  local path = get(args, 'label_net', nil)
  local net
  if path then
    if not lua_file.is_lua_path(path) then
      raise(string.format("--label-net: expected the path of a .lua file returning a module, got '%s'", path))
    end
    local src, where = saved_source(args, 'class_net.lua')
    if not src then
      local err
      src, err = lua_file.read(path)
      if not src then raise(string.format("--label-net: cannot read '%s': %s", path, tostring(err))) end
      where = path
    end
    net = lua_file.build(src, where, { label_width, embed }, '--label-net', path)
  else
    net = default(label_width, embed)
  end
  return M.check_label_net(net, label_width, embed, path and ("--label-net '" .. path .. "'") or 'label net')
end

-- optimizer(args, params) -> Adam (the tutorial's) or AdamW (--optimizer adamw, --weight-decay)
function M.optimizer(args, params)
  local name = get(args, 'optimizer', 'adam')
  local lr = get(args, 'lr', 1e-4)
  local wd = get(args, 'weight_decay', nil)
  if name == 'adamw' then
    return ddpm.optim.AdamW(params, { lr = lr, weight_decay = wd == nil and 1e-2 or wd })
  elseif name == 'adam' then
    return ddpm.optim.Adam(params, { lr = lr, weight_decay = wd or 0 })
  end
  raise(string.format("--optimizer: unknown optimizer '%s'; expected adam or adamw", tostring(name)))
end

-- the optimizer's name as the summary prints it
function M.optimizer_name(args)
  local name = get(args, 'optimizer', 'adam')
  local wd = get(args, 'weight_decay', nil)
  local s = name == 'adamw' and 'AdamW' or 'Adam'
  if wd and wd > 0 then s = s .. string.format(' (weight decay %g)', wd) end
  return s
end

return M
