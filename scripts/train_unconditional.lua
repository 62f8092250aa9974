-- train_unconditional.lua: the tutorial's first part: the same training loop without labels, on a
-- UNet2DModel with self-attention blocks; samples with DDPMPipeline.  `--help` lists every option.
--   ddpm-lua scripts/train_unconditional.lua                     # built-in Angband sprites, 32 epochs
--   ddpm-lua scripts/train_unconditional.lua --data x.npy --out runs/uncond
--   ddpm-lua scripts/train_unconditional.lua --resume runs/unconditional
local training = require 'ddpm.training'
local options = training.options

local args = options.parse(arg, {
  kind = 'unconditional',
  description = 'Train the unconditional sprite diffusion model (UNet2DModel).',
})
if args.threads > 0 then ddpm.set_num_threads(args.threads) end

local trainer = options.guard(function()
  local data = training.data.load(args, { conditional = false })
  ddpm.manual_seed(args.seed)

  -- plain blocks at full resolution, self-attention below it
  local down, up = {}, {}
  for i = 1, #args.channels do
    down[i] = i == 1 and 'DownBlock2D' or 'AttnDownBlock2D'
    up[#args.channels + 1 - i] = i == 1 and 'UpBlock2D' or 'AttnUpBlock2D'
  end
  local unet = ddpm.models.UNet2DModel{
    sample_size = data.sample_size, in_channels = 3, out_channels = 3,
    layers_per_block = args.layers_per_block, block_out_channels = args.channels,
    down_block_types = down, up_block_types = up,
    norm_num_groups = args.norm_groups, attention_head_dim = args.attention_heads,
  }
  -- DDPMScheduler(num_train_timesteps=--timesteps) unless --scheduler names another (or a .lua file)
  local noise_scheduler = training.components.noise_scheduler(args)

  local t = training.Trainer{ unet = unet, scheduler = noise_scheduler, data = data, args = args }
  if args.resume_dir then t:resume(args.resume_dir, args.resume_state) end
  return t
end)

print(trainer:summary())
trainer:fit()
trainer:finish()
