-- deep_mlp_label_net.lua: a deeper label net, three layers with LayerNorm and SiLU, giving two
-- tokens for the UNet to cross-attend to instead of one.
-- Use: --label-net scripts/experiments/examples/deep_mlp_label_net.lua
local nn = ddpm.nn

-- [B, n * d] -> [B, n, d]: n tokens of width d
local Tokens = nn.class('Tokens')
function Tokens:__init(n, d)
  nn.Module.__init(self)
  self.n, self.d = n, d
end
function Tokens:forward(x) return x:reshape(x:size(0), self.n, self.d) end

return function(label_width, embed_dim)
  local hidden = 2 * embed_dim
  return nn.Sequential(
    nn.Linear(label_width, hidden), nn.SiLU(),
    nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.SiLU(),
    nn.Linear(hidden, 2 * embed_dim), Tokens(2, embed_dim))
end
