-- nn/fops.lua: the functional ops the modules call.  Each name resolves to
-- ddpm.nn.functional's implementation; while a branch of the engine lacks one, a slow composite
-- of existing tensor ops stands in (same math, PyTorch signatures), so modules and their tests
-- never depend on which ops have landed.
local ddpm = require 'ddpm'
local F = require 'ddpm.nn.functional'

local C = {}

local function pair(v)
  if type(v) == 'table' then return v[1], v[2] end
  return v, v
end

-- conv2d(x, w, b, stride, padding, dilation, groups): a sum over the kernel taps of
-- [B,Ho,Wo,Cin] @ [Cin,Cout] products; dilation 1 and groups 1 only
function C.conv2d(x, w, b, stride, padding, dilation, groups)
  assert((dilation or 1) == 1 and (groups or 1) == 1, 'conv2d fallback: dilation and groups must be 1')
  local sh, sw = pair(stride or 1)
  local ph, pw = pair(padding or 0)
  local B, Cin, H, W = unpack(x:shape())
  local Cout, _, KH, KW = unpack(w:shape())
  if ph > 0 or pw > 0 then x = C.pad(x, { pw, pw, ph, ph }) end
  local Hp, Wp = H + 2 * ph, W + 2 * pw
  local Ho, Wo = math.floor((Hp - KH) / sh) + 1, math.floor((Wp - KW) / sw) + 1
  local xt = x:permute(0, 2, 3, 1) -- B,Hp,Wp,Cin
  local out
  for i = 0, KH - 1 do
    for j = 0, KW - 1 do
      local patch = xt:slice(1, i, i + sh * (Ho - 1) + 1, sh):slice(2, j, j + sw * (Wo - 1) + 1, sw)
      local wij = w:select(3, j):select(2, i):t() -- Cin,Cout
      local y = patch:matmul(wij)
      out = out and (out + y) or y
    end
  end
  if b ~= nil then out = out + b end
  return out:permute(0, 3, 1, 2):contiguous()
end

-- pad(x, {left, right, top, bottom, ...}, mode='constant', value=0): constant padding of the
-- last dims by concatenation
function C.pad(x, pads, mode, value)
  value = value or 0
  local nd = x:dim()
  for k = 1, #pads / 2 do
    local d = nd - k
    local lo, hi = pads[2 * k - 1], pads[2 * k]
    local parts = {}
    local shape = x:shape()
    if lo > 0 then
      shape[d + 1] = lo
      parts[#parts + 1] = ddpm.full(shape, value, { dtype = x.dtype, device = x.device })
    end
    parts[#parts + 1] = x
    if hi > 0 then
      shape = x:shape()
      shape[d + 1] = hi
      parts[#parts + 1] = ddpm.full(shape, value, { dtype = x.dtype, device = x.device })
    end
    if #parts > 1 then x = ddpm.cat(parts, d) end
  end
  return x
end

function C.group_norm(x, G, w, b, eps)
  local shape = x:shape()
  local B, Ch = shape[1], shape[2]
  local xg = x:reshape(B, G, -1)
  local mean = xg:mean(2, true)
  local var = xg:var(2, { correction = 0, keepdim = true })
  local y = ((xg - mean) * (var + (eps or 1e-5)):rsqrt()):reshape(shape)
  if w ~= nil then
    local bshape = { 1, Ch }
    for i = 3, #shape do bshape[i] = 1 end
    y = y * w:reshape(bshape)
    if b ~= nil then y = y + b:reshape(bshape) end
  end
  return y
end

function C.layer_norm(x, normalized_shape, w, b, eps)
  local n = type(normalized_shape) == 'table' and #normalized_shape or 1
  local dims = {}
  for i = 1, n do dims[i] = -i end
  local mean = x:mean(dims, true)
  local var = x:var(dims, { correction = 0, keepdim = true })
  local y = (x - mean) * (var + (eps or 1e-5)):rsqrt()
  if w ~= nil then y = y * w end
  if b ~= nil then y = y + b end
  return y
end

function C.softmax(x, dim)
  local e = (x - x:amax(dim, true):detach()):exp()
  return e / e:sum(dim, true)
end

-- scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, {scale=})
function C.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, opts)
  if type(attn_mask) == 'table' and not ddpm.is_tensor(attn_mask) then opts, attn_mask = attn_mask, attn_mask.attn_mask end
  local d = q:size(-1)
  local scale = opts and opts.scale or 1 / math.sqrt(d)
  local s = q:matmul(k:transpose(-1, -2)) * scale
  if attn_mask ~= nil then s = s + attn_mask end
  return C.softmax(s, -1):matmul(v)
end

-- interpolate(x, {scale_factor=2, mode='nearest'} | {size={h, w}}): nearest, integer factors
function C.interpolate(x, size, scale_factor, mode)
  if type(size) == 'table' and (size.scale_factor or size.size or size.mode) then
    size, scale_factor, mode = size.size, size.scale_factor, size.mode
  end
  assert((mode or 'nearest') == 'nearest', 'interpolate fallback: nearest only')
  local B, Ch, H, W = unpack(x:shape())
  local fh, fw
  if size then
    local oh, ow = pair(size)
    fh, fw = oh / H, ow / W
  else
    fh, fw = pair(scale_factor)
  end
  assert(fh == math.floor(fh) and fw == math.floor(fw), 'interpolate fallback: integer factors only')
  return x:reshape(B, Ch, H, 1, W, 1):expand(B, Ch, H, fh, W, fw):reshape(B, Ch, H * fh, W * fw)
end

function C.dropout(x, p, training)
  if not training or p == 0 then return x end
  if p >= 1 then return x * 0 end
  local keep = ddpm.bernoulli(ddpm.full(x:shape(), 1 - p, { dtype = x.dtype, device = x.device }))
  return x * keep / (1 - p)
end

function C.embedding(idx, w) return w:index_select(0, idx:reshape(-1)):reshape((function()
  local s = idx:shape()
  s[#s + 1] = w:size(1)
  return s
end)()) end

function C.mse_loss(a, b, opts)
  local red = type(opts) == 'table' and opts.reduction or opts or 'mean'
  local d = (a - b):square()
  if red == 'mean' then return d:mean() elseif red == 'sum' then return d:sum() end
  return d
end

function C.l1_loss(a, b, opts)
  local red = type(opts) == 'table' and opts.reduction or opts or 'mean'
  local d = (a - b):abs()
  if red == 'mean' then return d:mean() elseif red == 'sum' then return d:sum() end
  return d
end

return setmetatable({ fallback = C }, { __index = function(_, k) return F[k] or C[k] end })
