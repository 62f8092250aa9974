-- tutorial.lua: the tutorial's PyTorch + diffusers program ported line by line, with no training
-- framework in between: a plain loop a researcher edits (train_conditional.lua is the same job
-- with checkpoints, resume, logs and options).  Each block quotes the Python it replaces.
--   ddpm-lua scripts/tutorial.lua                        # the tutorial's settings, built-in sprites
--   ddpm-lua scripts/tutorial.lua --epochs 2 --out runs/tutorial
local nn, F = ddpm.nn, ddpm.nn.functional
local UNet2DConditionModel = ddpm.models.UNet2DConditionModel
local DDPMScheduler = ddpm.schedulers.DDPMScheduler

local args = ddpm.cli.parse(arg, {
  description = "The tutorial's class-conditional sprite diffusion, as a plain training loop.",
  options = {
    { '--data', help = 'images .npy (uint8 [N,H,W,3]); default: the built-in Angband sprites' },
    { '--labels', help = 'one-hot labels .npy ([N, classes]); with --data' },
    { '--epochs', type = 'integer', default = 32, min = 1 },
    { '--batch-size', type = 'integer', default = 128, min = 1 },
    { '--lr', type = 'number', default = 1e-4 },
    { '--max-steps', type = 'integer', default = 0, min = 0, help = 'stop after this many steps (0: no limit)' },
    { '--sample-steps', type = 'integer', default = 200, min = 1, help = 'denoising steps for the grid' },
    { '--device', default = 'cpu', help = "'cpu' or 'cuda'" },
    { '--autocast', type = 'boolean', default = true,
      help = "mixed precision as the tutorial's autocast(device): bfloat16 on either device (--no-autocast: float32)" },
    { '--seed', type = 'integer', default = 0 },
    { '--out', default = 'runs/tutorial', help = 'where the model and samples.png go' },
  } })
if (args.data == nil) ~= (args.labels == nil) then
  error('tutorial.lua: give --data and --labels together (or neither for the built-in sprites)', 0)
end
local device = args.device
ddpm.manual_seed(args.seed)

-- dataset = CustomDataset("sprites_1788_16x16.npy", "sprite_labels_nc_1788_16x16.npy", transform)
-- dataloader = DataLoader(dataset, batch_size=128, shuffle=True)
local dataset = args.data and ddpm.data.NpyImageDataset(args.data, args.labels) or ddpm.data.load_default()
local dataloader = ddpm.data.DataLoader(dataset, { batch_size = args.batch_size, shuffle = true })
local num_classes = dataset.labels:size(1)

-- emb_net = nn.Sequential(nn.Linear(5, 64), nn.GELU(), nn.Linear(64, 64), Unsqueeze(1)).to(device)
local emb_net = nn.Sequential(nn.Linear(num_classes, 64), nn.GELU(), nn.Linear(64, 64), nn.Unsqueeze(1)):to(device)

-- unet = UNet2DConditionModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=2,
--     block_out_channels=(64, 128), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
--     up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), encoder_hid_dim=64).to(device)
local unet = UNet2DConditionModel{
  sample_size = dataset.images:size(2), in_channels = 3, out_channels = 3, layers_per_block = 2,
  block_out_channels = { 64, 128 }, down_block_types = { 'DownBlock2D', 'CrossAttnDownBlock2D' },
  up_block_types = { 'CrossAttnUpBlock2D', 'UpBlock2D' }, encoder_hid_dim = 64,
}:to(device)

-- noise_scheduler = DDPMScheduler(num_train_timesteps=200)
-- optimizer = torch.optim.Adam(list(unet.parameters()) + list(emb_net.parameters()), lr=1e-4)
-- scaler = torch.cuda.amp.GradScaler()
local noise_scheduler = DDPMScheduler{ num_train_timesteps = 200 }
local params = unet:parameters()
for _, p in ipairs(emb_net:parameters()) do params[#params + 1] = p end
local optimizer = ddpm.optim.Adam(params, { lr = args.lr })
local cuda = device:match('^cuda') ~= nil
local scaler = ddpm.amp.GradScaler({ enabled = cuda })

-- with autocast(device): ... -- bfloat16 (PyTorch's CPU autocast type; on CUDA it saves the loss
-- scaling float16 needs), float32 master weights
local function forward_loss(noisy_images, timesteps, labels, noise)
  local noise_pred = unet(noisy_images, timesteps, emb_net(labels)).sample
  return F.mse_loss(noise_pred:float(), noise)
end

local step = 0
for epoch = 0, args.epochs - 1 do
  local total, batches = 0, 0
  -- for images, labels in tqdm(dataloader):
  for images, labels in dataloader do
    images, labels = images:to(device), labels:to(device)
    -- noise = torch.randn_like(images)
    -- timesteps = torch.randint(0, 200, (images.shape[0],), device=device).long()
    -- noisy_images = noise_scheduler.add_noise(images, noise, timesteps)
    local noise = ddpm.randn_like(images)
    local timesteps = ddpm.randint(0, 200, { images:size(0) }, { device = device })
    local noisy_images = noise_scheduler:add_noise(images, noise, timesteps)
    -- with autocast(device): noise_pred = unet(noisy_images, timesteps, emb_net(labels)).sample
    --                        loss = F.mse_loss(noise_pred, noise)
    local loss
    if args.autocast then
      loss = ddpm.autocast(device, { dtype = ddpm.bfloat16 }, forward_loss, noisy_images, timesteps, labels, noise)
    else
      loss = forward_loss(noisy_images, timesteps, labels, noise)
    end
    -- optimizer.zero_grad(); scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()
    optimizer:zero_grad()
    scaler:scale(loss):backward()
    scaler:step(optimizer)
    scaler:update()
    total, batches, step = total + loss:item(), batches + 1, step + 1
    if args.max_steps > 0 and step >= args.max_steps then break end
  end
  -- print(f"Finished epoch {epoch}. Average loss for this epoch: {total_loss / len(dataloader):05f}")
  print(string.format('Finished epoch %d. Average loss for this epoch: %05f', epoch, total / batches))
  if args.max_steps > 0 and step >= args.max_steps then break end
end

-- unet.save_pretrained("model/unet"); torch.save(emb_net.state_dict(), "model/emb_net.pt")
unet:save_pretrained(args.out .. '/unet')
ddpm.save(emb_net:state_dict(), args.out .. '/emb_net.safetensors')

-- pipeline = ConditionalPipeline(unet, emb_net, noise_scheduler)
-- labels = one-hot of [0,0,0,0, 1,1,1,1, ..., 4,4,4,4];  images = pipeline(labels, 200 steps)
-- show a 5x4 grid
local pipeline = ddpm.pipelines.ConditionalDDPMPipeline(unet, emb_net, noise_scheduler)
local class_ids = {}
for c = 0, num_classes - 1 do for _ = 1, 4 do class_ids[#class_ids + 1] = c end end
local labels = F.one_hot(ddpm.tensor(class_ids, { dtype = ddpm.int64 }), num_classes):float()
local images = pipeline(labels, { num_inference_steps = args.sample_steps, generator = args.seed }).images
ddpm.utils.save_image(images, args.out .. '/samples.png', { nrow = 4 })
print('wrote ' .. args.out .. '/samples.png (one row per class)')
