-- data/init.lua: ddpm.data, data sets, samplers, loaders and batch transforms (≈ torch.utils.data
-- + the few torchvision transforms diffusion training uses), and the built-in Angband sprite set.
local M = {}

local lazy = {
  TensorDataset = { 'ddpm.data.dataset', 'TensorDataset' },
  NpyImageDataset = { 'ddpm.data.dataset', 'NpyImageDataset' },
  ImageFolder = { 'ddpm.data.dataset', 'ImageFolder' },
  DataLoader = { 'ddpm.data.loader', 'DataLoader' },
  SequentialSampler = { 'ddpm.data.sampler', 'SequentialSampler' },
  RandomSampler = { 'ddpm.data.sampler', 'RandomSampler' },
  WeightedRandomSampler = { 'ddpm.data.sampler', 'WeightedRandomSampler' },
  class_balanced_weights = { 'ddpm.data.sampler', 'class_balanced_weights' },
  RandomHorizontalFlip = { 'ddpm.data.transforms', 'RandomHorizontalFlip' },
  RandomVerticalFlip = { 'ddpm.data.transforms', 'RandomVerticalFlip' },
  Compose = { 'ddpm.data.transforms', 'Compose' },
  Lambda = { 'ddpm.data.transforms', 'Lambda' },
  transforms = { 'ddpm.data.transforms' },
  angband = { 'ddpm.data.angband' },
}

-- load_default({tileset=, cache_dir=}) -> NpyImageDataset of the Angband sprites (built and cached
-- on first use; see ddpm.data.angband)
function M.load_default(opts)
  local files = require('ddpm.data.angband').build(opts)
  return require('ddpm.data.dataset').NpyImageDataset(files.images, files.labels)
end

return require('ddpm.lazy')(M, lazy)

