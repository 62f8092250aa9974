-- train_better_conditional.lua: the follow-up recipe for the class-conditional sprite model: a
-- three-level UNet (64, 128, 256: DownBlock2D, DownBlock2D, CrossAttnDownBlock2D and the mirrored
-- up blocks) with dropout 0.2, a smaller label net with dropout (Linear(5,32)-Dropout(0.1)-GELU-
-- Linear(32,64)-Unsqueeze(1)), DDIMScheduler(1000), AdamW (lr 1e-4, weight decay 1e-4), L1 loss on
-- the noise, class-balanced sampling, and after --warmup epochs a frozen label net with labels
-- zeroed with probability --mask-prob (so the all-zero label learns "any class", for guidance).
-- Samples in 10 DDIM steps.  Every option of train_conditional.lua works here too (--help).
--   ddpm-lua scripts/train_better_conditional.lua                     # runs/better_conditional/
--   ddpm-lua scripts/train_better_conditional.lua --mask-prob 0.1 --warmup 4 --guidance 2
local nn = ddpm.nn
local training = require 'ddpm.training'
local options = training.options

local args = options.parse(arg, {
  kind = 'conditional',
  description = 'Train the follow-up recipe of the class-conditional sprite model (three-level UNet, DDIM, AdamW, L1, '
    .. 'class-balanced sampling, label masking after a warm-up).',
  defaults = {
    channels = { 64, 128, 256 }, scheduler = 'ddim', timesteps = 1000, optimizer = 'adamw', weight_decay = 1e-4,
    loss = 'l1', balance = true, sample_scheduler = 'ddim', sample_steps = 10, out = 'runs/better_conditional',
  },
  extra = {
    { '--dropout', type = 'number', default = 0.2, min = 0, max = 1, help = 'UNet dropout (in its ResNet blocks)' },
    { '--label-hidden', type = 'integer', default = 32, min = 1, help = 'width of the label net\'s hidden layer' },
    { '--label-net-dropout', type = 'number', default = 0.1, min = 0, max = 1, help = 'dropout inside the label net' },
    { '--warmup', type = 'integer', default = 10, min = 0,
      help = 'epochs before the label net is frozen and label masking starts' },
    { '--mask-prob', type = 'number', default = 0.05, min = 0, max = 1,
      help = 'after the warm-up, probability that a label is replaced by the all-zero label' },
  },
})
if args.threads > 0 then ddpm.set_num_threads(args.threads) end

-- before each epoch: the warm-up trains the label net on true labels; afterwards it is frozen and
-- some labels are masked (a function of the epoch, so a resumed run lands in the same phase)
local function phase(trainer, epoch)
  local after = epoch >= args.warmup
  trainer.class_net:requires_grad_(not after)
  trainer.label_dropout = after and args.mask_prob or args.label_dropout
  if after and not trainer._masking_announced then
    trainer._masking_announced = true
    trainer.print(string.format('epoch %d: label net frozen; labels masked with probability %g', epoch, args.mask_prob))
  end
end

local trainer = options.guard(function()
  local data = training.data.load(args, { conditional = true })
  ddpm.manual_seed(args.seed)

  local class_net = training.components.label_net(args, data.num_classes, function(width, dim)
    return nn.Sequential(nn.Linear(width, args.label_hidden), nn.Dropout(args.label_net_dropout), nn.GELU(),
      nn.Linear(args.label_hidden, dim), nn.Unsqueeze(1))
  end)

  -- plain blocks, cross-attention to the label token only at the lowest resolution
  local n = #args.channels
  local down, up = {}, {}
  for i = 1, n do
    down[i] = i == n and 'CrossAttnDownBlock2D' or 'DownBlock2D'
    up[n + 1 - i] = i == n and 'CrossAttnUpBlock2D' or 'UpBlock2D'
  end
  local unet = ddpm.models.UNet2DConditionModel{
    sample_size = data.sample_size, in_channels = 3, out_channels = 3,
    layers_per_block = args.layers_per_block, block_out_channels = args.channels,
    down_block_types = down, up_block_types = up, dropout = args.dropout,
    norm_num_groups = args.norm_groups, attention_head_dim = args.attention_heads,
    cross_attention_dim = args.cross_attention_dim, encoder_hid_dim = args.embed_dim,
  }
  -- DDIMScheduler(num_train_timesteps=1000) unless --scheduler names another (or a .lua file)
  local noise_scheduler = training.components.noise_scheduler(args)

  local t = training.Trainer{ unet = unet, class_net = class_net, scheduler = noise_scheduler, data = data, args = args,
    on_epoch = phase }
  if args.resume_dir then t:resume(args.resume_dir, args.resume_state) end
  return t
end)

print(trainer:summary())
print(string.format('recipe: %s, %s loss, %s sampling, label net frozen and labels masked (p=%g) from epoch %d',
  table.concat(args.channels, '/'), args.loss, args.balance and 'class-balanced' or 'uniform', args.mask_prob, args.warmup))
trainer:fit()
trainer:finish()
