-- ddpm.nn (≈ torch.nn): modules; ddpm.nn.functional holds the stateless ops.
local nn = {}
nn.functional = require 'ddpm.nn.functional'
return nn
