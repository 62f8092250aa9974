-- pipelines/init.lua: ddpm.pipelines (≈ diffusers.pipelines): sampling pipelines that work with
-- every scheduler, their files in diffusers' layout, and sample grids.
--   ConditionalDDPMPipeline(unet, class_net, scheduler)   pipe(labels, {...}).images
--   DDPMPipeline(unet, scheduler)                         pipe{batch_size=, ...}.images
--   load(dir, {scheduler=, device=})                      a pipeline saved by save_pretrained or a training run
--   class_grid(pipe, {...}) / sample_grid(pipe, {...})    the labelled sample sheet as PNG
local M = {}

local lazy = {
  ConditionalDDPMPipeline = { 'ddpm.pipelines.conditional', 'ConditionalDDPMPipeline' },
  DDPMPipeline = { 'ddpm.pipelines.unconditional', 'DDPMPipeline' },
  load = { 'ddpm.pipelines.loading', 'load' },
  save = { 'ddpm.pipelines.loading', 'save' },
  class_grid = { 'ddpm.pipelines.grid', 'class_grid' },
  sample_grid = { 'ddpm.pipelines.grid', 'sample_grid' },
  label_net = { 'ddpm.pipelines.label_net' },
  base = { 'ddpm.pipelines.base' },
}

return require('ddpm.lazy')(M, lazy)

