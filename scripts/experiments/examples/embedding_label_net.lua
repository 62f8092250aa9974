-- embedding_label_net.lua: a label net that is a lookup table (nn.Embedding) instead of an MLP:
-- class k -> row k + 1, the all-zero label (label masking, the unconditional pass of guidance) ->
-- row 0.  Use: --label-net scripts/experiments/examples/embedding_label_net.lua
local nn = ddpm.nn

return function(label_width, embed_dim)
  local EmbeddingLabelNet = nn.class('EmbeddingLabelNet')
  function EmbeddingLabelNet:__init()
    nn.Module.__init(self)
    self.table = nn.Embedding(label_width + 1, embed_dim)
  end
  -- labels float [B, label_width] (one-hot rows) -> encoder_hidden_states [B, 1, embed_dim]
  function EmbeddingLabelNet:forward(labels)
    local any = labels:amax(1):gt(ddpm.full({}, 0, { device = labels.device })):long()
    return self.table((labels:argmax(1) + 1) * any):unsqueeze(1)
  end
  return EmbeddingLabelNet()
end
