-- train_conditional.lua: the tutorial's class-conditional sprite model: a label net turns one-hot
-- classes into one token the UNet cross-attends to; DDPM noise schedule, MSE on the noise, Adam.
-- The defaults are the tutorial's settings; `--help` lists every option.
--   ddpm-lua scripts/train_conditional.lua                       # built-in Angband sprites, 32 epochs
--   ddpm-lua scripts/train_conditional.lua --data x.npy --labels y.npy --out runs/mine
--   ddpm-lua scripts/train_conditional.lua --resume runs/conditional      # continue (also after Ctrl-C)
-- The run directory gets checkpoint/ (diffusers' layout + training state), train_log.csv and
-- samples.png (4 samples per class, one labelled row per class).
local nn = ddpm.nn
local training = require 'ddpm.training'
local options = training.options

local args = options.parse(arg, {
  kind = 'conditional',
  description = 'Train the class-conditional sprite diffusion model (UNet2DConditionModel + label net).',
})
if args.threads > 0 then ddpm.set_num_threads(args.threads) end

-- everything that can fail on bad input runs here, before the first step
local trainer = options.guard(function()
  local data = training.data.load(args, { conditional = true })
  ddpm.manual_seed(args.seed)

  -- the label net: one-hot class -> one embed_dim-wide token ([B, 1, 64] in the tutorial), unless
  -- --label-net FILE.lua gives another
  local class_net = training.components.label_net(args, data.num_classes, function(width, dim)
    return nn.Sequential(nn.Linear(width, dim), nn.GELU(), nn.Linear(dim, dim), nn.Unsqueeze(1))
  end)

  -- the UNet: plain blocks at full resolution, cross-attention to the label token below it
  local down, up = {}, {}
  for i = 1, #args.channels do
    down[i] = i == 1 and 'DownBlock2D' or 'CrossAttnDownBlock2D'
    up[#args.channels + 1 - i] = i == 1 and 'UpBlock2D' or 'CrossAttnUpBlock2D'
  end
  local unet = ddpm.models.UNet2DConditionModel{
    sample_size = data.sample_size, in_channels = 3, out_channels = 3,
    layers_per_block = args.layers_per_block, block_out_channels = args.channels,
    down_block_types = down, up_block_types = up,
    norm_num_groups = args.norm_groups, attention_head_dim = args.attention_heads,
    cross_attention_dim = args.cross_attention_dim, encoder_hid_dim = args.embed_dim,
  }
  -- DDPMScheduler(num_train_timesteps=--timesteps) unless --scheduler names another (or a .lua file)
  local noise_scheduler = training.components.noise_scheduler(args)

  local t = training.Trainer{ unet = unet, class_net = class_net, scheduler = noise_scheduler, data = data, args = args }
  if args.resume_dir then t:resume(args.resume_dir, args.resume_state) end
  return t
end)

print(trainer:summary())
trainer:fit()
trainer:finish()
