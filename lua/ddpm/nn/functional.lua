-- nn/functional.lua: ddpm.nn.functional (≈ torch.nn.functional): stateless layers over the
-- engine's ops.  Also adds the matching tensor methods (t:softmax(dim), ...).
local ddpm = require 'ddpm'
local T = require 'ddpm.tensor'
local F = {}

function F.linear(x, w, b)
  T.need_tensor(x, 'input', 'linear')
  T.need_tensor(w, 'weight', 'linear')
  if b ~= nil then T.need_tensor(b, 'bias', 'linear') end
  return T.call3(ddpm.C.ddpm_linear, x, w, b)
end
function F.relu(x) return x:relu() end
function F.silu(x) return T.call1(ddpm.C.ddpm_silu, x) end
function F.sigmoid(x) return x:sigmoid() end
function F.tanh(x) return x:tanh() end
-- gelu(x, {approximate='none'|'tanh'})
function F.gelu(x, opts)
  local approx = type(opts) == 'table' and opts.approximate or (type(opts) == 'string' and opts) or 'none'
  if approx ~= 'none' and approx ~= 'tanh' then
    T.check(1) -- never reached; keeps the error path uniform
  end
  return T.call2(ddpm.C.ddpm_gelu, x, approx == 'tanh' and 1 or 0)
end

T.methods.silu = F.silu
T.methods.gelu = F.gelu

return F
