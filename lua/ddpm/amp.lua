-- ddpm.amp (≈ torch.amp / torch.cuda.amp): mixed-precision helpers.  GradScaler is the dynamic
-- loss scaler (lua/ddpm/optim/grad_scaler.lua); autocast is added here by its own module.
local amp = {}
amp.GradScaler = require 'ddpm.optim.grad_scaler'
amp.autocast = require 'ddpm.autocast'
return amp
