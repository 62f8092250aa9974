-- optim/adamw.lua: AdamW (Adam with decoupled weight decay, ≈ torch.optim.AdamW); it shares
-- its implementation with Adam in optim/adam.lua.
return require('ddpm.optim.adam').AdamW
