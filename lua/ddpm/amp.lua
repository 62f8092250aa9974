-- ddpm.amp (≈ torch.amp / torch.cuda.amp / torch.cpu.amp): mixed-precision helpers.  GradScaler is
-- the dynamic loss scaler (lua/ddpm/optim/grad_scaler.lua); autocast is ddpm.autocast itself
-- (lua/ddpm/autocast.lua), as torch.amp.autocast is torch.autocast: ddpm.amp.autocast('cpu', {...}, fn).
local amp = {}
amp.GradScaler = require 'ddpm.optim.grad_scaler'
amp.autocast = require 'ddpm.autocast'
return amp
