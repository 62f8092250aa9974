-- ddpm.optim (≈ torch.optim): SGD, Adam, AdamW with fused C updates, learning-rate schedules
-- (torch's lr_scheduler and diffusers' get_scheduler names) and diffusers' EMAModel.
local adam = require 'ddpm.optim.adam'
local lr_scheduler = require 'ddpm.optim.lr_scheduler'

local optim = {}
optim.Optimizer = require 'ddpm.optim.optimizer'
optim.SGD = require('ddpm.optim.sgd').SGD
optim.Adam = adam.Adam
optim.AdamW = adam.AdamW
optim.lr_scheduler = lr_scheduler
optim.get_scheduler = lr_scheduler.get_scheduler
optim.EMAModel = require 'ddpm.optim.ema'
return optim
