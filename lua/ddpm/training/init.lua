-- training/init.lua: ddpm.training, what the training scripts share so none copies another:
--   options     the command-line options (tutorial defaults), --resume merging, pre-flight checks
--   data        the training data from the options (.npy, image folder, built-in Angband sprites)
--   Trainer     the loop: noise, timesteps, loss, optimizer, progress, log, checkpoints, Ctrl-C
--   checkpoint  RUN/checkpoint in diffusers' layout + training state, swapped in atomically
--   losses      mse (default), l1, huber, or your own function
--   components  what options swap: --scheduler (name or .lua), --label-net FILE.lua, --optimizer
--   metrics_log the per-step CSV/JSONL log
--   fs          the filesystem helpers checkpoints use
local M = {}

local lazy = {
  options = { 'ddpm.training.options' },
  data = { 'ddpm.training.data' },
  Trainer = { 'ddpm.training.trainer', 'Trainer' },
  checkpoint = { 'ddpm.training.checkpoint' },
  losses = { 'ddpm.training.losses' },
  components = { 'ddpm.training.components' },
  metrics_log = { 'ddpm.training.metrics_log' },
  fs = { 'ddpm.training.fs' },
}

return require('ddpm.lazy')(M, lazy)

