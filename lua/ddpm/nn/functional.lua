-- nn/functional.lua: ddpm.nn.functional (≈ torch.nn.functional): stateless layers over the
-- engine's ops, with PyTorch's signatures.  Keyword arguments come as a trailing options table
-- (F.conv2d(x, w, b, {stride=2, padding=1})); PyTorch's positional forms work too
-- (F.conv2d(x, w, b, 2, 1)).  Also adds the matching tensor methods (t:softmax(dim), ...).
local ddpm = require 'ddpm'
local T = require 'ddpm.tensor'
local D = require 'ddpm.dtype'
local FFI = require 'ddpm.ffi'
local ffi = FFI.ffi
local raise = FFI.raise
local C = ddpm.C
local call1, call2, call3, call4, call5, call6 = T.call1, T.call2, T.call3, T.call4, T.call5, T.call6
local need_tensor, is_tensor = T.need_tensor, T.is_tensor
local methods = T.methods
local F = {}

local NAN = 0 / 0
-- argument buffers, one per role so nested calls (conv2d's 'same' padding calls F.pad) never clash
local i64a, i64b, i64c = ffi.new('int64_t[16]'), ffi.new('int64_t[8]'), ffi.new('int64_t[8]')
local padbuf = ffi.new('int64_t[16]')
local dbl3 = ffi.new('double[3]')
local outp = FFI.outp

-- call a C entry point with more arguments than T.call1..call6 take
local function calln(fn, ...)
  local st = fn(outp, ...)
  if st ~= 0 then FFI.retry(st, fn, outp, ...) end
  return T.wrap(outp[0])
end

-- a 0-d tensor like t (comparisons against it need no scalar conversion)
local function scalar(v, t) return ddpm.full({}, v, { dtype = t.dtype, device = t.device }) end

-- a trailing options table (named keys only), as opposed to a size list or a tensor
local function is_opts(x) return type(x) == 'table' and not is_tensor(x) and x[1] == nil end

local function optional_tensor(x, what, op)
  if x == nil then return nil end
  return need_tensor(x, what, op)
end

-- n integers from a number (repeated) or a table of n numbers
local function int_tuple(v, n, what, op, buf)
  if type(v) == 'number' then
    for i = 0, n - 1 do buf[i] = v end
  elseif type(v) == 'table' and #v == n then
    for i = 1, n do
      if type(v[i]) ~= 'number' then raise(string.format('%s: %s must hold numbers', op, what)) end
      buf[i - 1] = v[i]
    end
  else
    raise(string.format('%s: %s must be a number or a table of %d numbers, got %s', op, what, n,
      type(v) == 'table' and ('a table of ' .. #v) or tostring(v)))
  end
  return buf
end

local reductions = { none = 0, mean = 1, sum = 2 }
local function reduction_of(o, op)
  local r = (type(o) == 'string' and o) or (type(o) == 'table' and o.reduction) or 'mean'
  local id = reductions[r]
  if not id then raise(string.format("%s: reduction must be 'none', 'mean' or 'sum', got %s", op, tostring(r))) end
  return id
end

-- ---- activations --------------------------------------------------------------------------------------------
function F.linear(x, w, b)
  need_tensor(x, 'input', 'linear')
  need_tensor(w, 'weight', 'linear')
  if b ~= nil then need_tensor(b, 'bias', 'linear') end
  return call3(C.ddpm_linear, x, w, b)
end
function F.relu(x) return x:relu() end
function F.silu(x) return call1(C.ddpm_silu, x) end
function F.sigmoid(x) return x:sigmoid() end
function F.tanh(x) return x:tanh() end
-- gelu(x, {approximate='none'|'tanh'}) (or the string itself)
function F.gelu(x, opts)
  local approx = type(opts) == 'table' and opts.approximate or (type(opts) == 'string' and opts) or 'none'
  if approx ~= 'none' and approx ~= 'tanh' then
    raise("gelu: approximate must be 'none' or 'tanh', got " .. tostring(approx))
  end
  return call2(C.ddpm_gelu, x, approx == 'tanh' and 1 or 0)
end

-- ---- convolution -----------------------------------------------------------------------------------------------
-- conv2d(input, weight, bias=nil, {stride=1, padding=0, dilation=1, groups=1}) or PyTorch's positional
-- form conv2d(input, weight, bias, stride, padding, dilation, groups).  padding: a number, {ph, pw},
-- 'valid' (0) or 'same' (stride 1; an odd total pads the extra row/column at the bottom/right, as PyTorch).
function F.conv2d(x, w, b, stride, padding, dilation, groups)
  need_tensor(x, 'input', 'conv2d')
  need_tensor(w, 'weight', 'conv2d')
  if is_opts(b) then b, stride = nil, b end
  optional_tensor(b, 'bias', 'conv2d')
  if is_opts(stride) then
    local o = stride
    stride, padding, dilation, groups = o.stride, o.padding, o.dilation, o.groups
  end
  stride, padding, dilation, groups = stride or 1, padding or 0, dilation or 1, groups or 1
  int_tuple(stride, 2, 'stride', 'conv2d', i64a)
  int_tuple(dilation, 2, 'dilation', 'conv2d', i64c)
  if padding == 'valid' then padding = 0 end
  if padding == 'same' then
    if i64a[0] ~= 1 or i64a[1] ~= 1 then raise("conv2d: padding='same' is not supported for strided convolutions") end
    local ws = w:shape()
    if #ws ~= 4 then raise('conv2d: expected a 4-D weight, got ' .. #ws .. '-D') end
    local th, tw = tonumber(i64c[0]) * (ws[3] - 1), tonumber(i64c[1]) * (ws[4] - 1)
    local ph, pw = math.floor(th / 2), math.floor(tw / 2)
    if th % 2 == 1 or tw % 2 == 1 then -- the odd pixel goes to the bottom/right
      x = F.pad(x, { 0, tw - 2 * pw, 0, th - 2 * ph })
    end
    padding = { ph, pw }
  end
  if type(padding) == 'string' then raise("conv2d: padding must be a number, a table, 'same' or 'valid', got '" .. padding .. "'") end
  int_tuple(padding, 2, 'padding', 'conv2d', i64b)
  if type(groups) ~= 'number' then raise('conv2d: groups must be a number, got ' .. type(groups)) end
  return calln(C.ddpm_conv2d, x, w, b, i64a, i64b, i64c, groups)
end

-- ---- normalisation ------------------------------------------------------------------------------------------------
-- group_norm(input, num_groups, weight=nil, bias=nil, eps=1e-5)
function F.group_norm(x, num_groups, w, b, eps)
  need_tensor(x, 'input', 'group_norm')
  T.need_number(num_groups, 'num_groups', 'group_norm')
  return call5(C.ddpm_group_norm, x, num_groups, optional_tensor(w, 'weight', 'group_norm'),
    optional_tensor(b, 'bias', 'group_norm'), eps or 1e-5)
end
-- silu(group_norm(...)) in one fused op: equal values and gradients, half the memory traffic
function F.group_norm_silu(x, num_groups, w, b, eps)
  need_tensor(x, 'input', 'group_norm_silu')
  T.need_number(num_groups, 'num_groups', 'group_norm_silu')
  return call5(C.ddpm_group_norm_silu, x, num_groups, optional_tensor(w, 'weight', 'group_norm_silu'),
    optional_tensor(b, 'bias', 'group_norm_silu'), eps or 1e-5)
end
-- layer_norm(input, normalized_shape, weight=nil, bias=nil, eps=1e-5); normalized_shape a number or a table
function F.layer_norm(x, normalized_shape, w, b, eps)
  need_tensor(x, 'input', 'layer_norm')
  local ns = normalized_shape
  if type(ns) == 'number' then ns = { ns } end
  if type(ns) ~= 'table' or #ns == 0 or #ns > 8 then
    raise('layer_norm: normalized_shape must be a number or a table of 1 to 8 sizes, got ' .. tostring(normalized_shape))
  end
  for i, v in ipairs(ns) do
    if type(v) ~= 'number' then raise('layer_norm: normalized_shape must hold numbers') end
    i64a[i - 1] = v
  end
  return call6(C.ddpm_layer_norm, x, #ns, i64a, optional_tensor(w, 'weight', 'layer_norm'),
    optional_tensor(b, 'bias', 'layer_norm'), eps or 1e-5)
end

-- ---- softmax and attention -------------------------------------------------------------------------------------------
local function softmax_like(fn, name)
  return function(x, dim, opts)
    need_tensor(x, 'input', name)
    if is_opts(dim) then dim, opts = dim.dim, dim end
    if dim == nil then raise(name .. ': dim must be given (PyTorch deprecated the implicit choice)') end
    T.need_number(dim, 'dim', name)
    if opts and opts.dtype then x = x:to(D.resolve(opts.dtype, name)) end
    return call2(fn, x, dim)
  end
end
F.softmax = softmax_like(C.ddpm_softmax, 'softmax')
F.log_softmax = softmax_like(C.ddpm_log_softmax, 'log_softmax')

-- scaled_dot_product_attention(query, key, value, {attn_mask=nil, dropout_p=0, is_causal=false, scale=nil,
-- generator=nil}) or positional (query, key, value, attn_mask, dropout_p, is_causal, scale).
-- query [..., L, E], key [..., S, E], value [..., S, Ev]; attn_mask bool (true = take part) or float (added).
function F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale)
  local op = 'scaled_dot_product_attention'
  need_tensor(q, 'query', op)
  need_tensor(k, 'key', op)
  need_tensor(v, 'value', op)
  local gen
  if is_opts(attn_mask) then
    local o = attn_mask
    attn_mask, dropout_p, is_causal, scale = o.attn_mask, o.dropout_p, o.is_causal, o.scale
    gen = ddpm._gen_handle(o)
  end
  if is_opts(scale) then scale = scale.scale end -- PyTorch's keyword-only scale= as a trailing table
  optional_tensor(attn_mask, 'attn_mask', op)
  dropout_p = dropout_p or 0
  T.need_number(dropout_p, 'dropout_p', op)
  if scale ~= nil then T.need_number(scale, 'scale', op) end
  return calln(C.ddpm_scaled_dot_product_attention, q, k, v, attn_mask, dropout_p, is_causal and 1 or 0,
    scale or NAN, gen)
end

-- ---- resampling and padding ------------------------------------------------------------------------------------------
local interp_modes = { nearest = 0, ['nearest-exact'] = 1, linear = 2, bilinear = 2, trilinear = 2 }
local linear_dims = { linear = 1, bilinear = 2, trilinear = 3 }
-- interpolate(input, {size=, scale_factor=, mode='nearest', align_corners=, recompute_scale_factor=}) or
-- positional interpolate(input, size, scale_factor, mode, align_corners)
function F.interpolate(x, size, scale_factor, mode, align_corners, recompute_scale_factor)
  local op = 'interpolate'
  need_tensor(x, 'input', op)
  if is_opts(size) then
    local o = size
    size, scale_factor, mode, align_corners, recompute_scale_factor = o.size, o.scale_factor, o.mode,
        o.align_corners, o.recompute_scale_factor
  end
  mode = mode or 'nearest'
  local m = interp_modes[mode]
  if not m then
    raise(string.format("%s: mode '%s' is not supported (nearest, nearest-exact, linear, bilinear, trilinear)", op,
      tostring(mode)))
  end
  local shape = x:shape()
  local ns = #shape - 2
  if ns < 1 or ns > 3 then raise(string.format('%s: expected a 3-D, 4-D or 5-D input [N, C, *spatial], got %d-D', op, #shape)) end
  if linear_dims[mode] and linear_dims[mode] ~= ns then
    raise(string.format('%s: got %dD input, but %s mode needs %dD input', op, #shape, mode, linear_dims[mode] + 2))
  end
  if align_corners ~= nil and m ~= 2 then
    raise(op .. ': align_corners option can only be set with the interpolating modes: linear | bilinear | trilinear')
  end
  if (size == nil) == (scale_factor == nil) then raise(op .. ': give exactly one of size or scale_factor') end
  for d = 0, 2 do dbl3[d] = 0 end
  if size ~= nil then
    int_tuple(size, ns, 'size', op, i64a)
  else
    local sf = scale_factor
    if type(sf) == 'number' then
      sf = {}
      for d = 1, ns do sf[d] = scale_factor end
    end
    if type(sf) ~= 'table' or #sf ~= ns then
      raise(string.format('%s: scale_factor must be a number or a table of %d numbers', op, ns))
    end
    for d = 1, ns do
      if type(sf[d]) ~= 'number' or sf[d] <= 0 then raise(op .. ': scale_factor must be positive') end
      i64a[d - 1] = math.floor(shape[d + 2] * sf[d])
      if not recompute_scale_factor then dbl3[d - 1] = sf[d] end
    end
  end
  return call6(C.ddpm_interpolate, x, ns, i64a, dbl3, m, align_corners and 1 or 0)
end

local pad_modes = { constant = 0, reflect = 1, replicate = 2, circular = 3 }
-- pad(input, pad, mode='constant', value=0) or pad(input, pad, {mode=, value=}); pad lists (left, right)
-- pairs from the last dim backwards: {left, right, top, bottom, front, back}
function F.pad(x, pad, mode, value)
  need_tensor(x, 'input', 'pad')
  if is_opts(mode) then mode, value = mode.mode, mode.value end
  mode = mode or 'constant'
  local m = pad_modes[mode]
  if not m then raise("pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', got " .. tostring(mode)) end
  if type(pad) ~= 'table' or #pad % 2 ~= 0 or #pad > 14 then
    raise('pad: pad must be a table with an even number of sizes (left, right, top, bottom, ...), got ' .. tostring(pad))
  end
  for i, v in ipairs(pad) do
    if type(v) ~= 'number' then raise('pad: pad must hold numbers') end
    padbuf[i - 1] = v
  end
  if value ~= nil and m ~= 0 then raise("pad: value can only be given with mode 'constant'") end
  return call5(C.ddpm_pad, x, #pad, padbuf, m, value or 0)
end

-- ---- dropout ---------------------------------------------------------------------------------------------------------
-- dropout(input, p=0.5, training=true, {generator=}) (identity when not training or p = 0)
function F.dropout(x, p, training, opts)
  need_tensor(x, 'input', 'dropout')
  if is_opts(p) then p, training, opts = p.p, p.training, p end
  if is_opts(training) then training, opts = nil, training end
  if training == nil then training = true end
  p = p or 0.5
  T.need_number(p, 'p', 'dropout')
  return call4(C.ddpm_dropout, x, p, training and 1 or 0, ddpm._gen_handle(opts))
end

-- ---- losses ---------------------------------------------------------------------------------------------------------------
-- mse_loss(input, target, {reduction='mean'}) (or the reduction string itself)
function F.mse_loss(x, t, opts)
  need_tensor(x, 'input', 'mse_loss')
  need_tensor(t, 'target', 'mse_loss')
  return call3(C.ddpm_mse_loss, x, t, reduction_of(opts, 'mse_loss'))
end
function F.l1_loss(x, t, opts)
  need_tensor(x, 'input', 'l1_loss')
  need_tensor(t, 'target', 'l1_loss')
  return call3(C.ddpm_l1_loss, x, t, reduction_of(opts, 'l1_loss'))
end
-- smooth_l1_loss(input, target, {reduction='mean', beta=1.0})
function F.smooth_l1_loss(x, t, opts)
  need_tensor(x, 'input', 'smooth_l1_loss')
  need_tensor(t, 'target', 'smooth_l1_loss')
  local beta = type(opts) == 'table' and opts.beta or 1.0
  return call4(C.ddpm_smooth_l1_loss, x, t, reduction_of(opts, 'smooth_l1_loss'), beta)
end
-- huber_loss(input, target, {reduction='mean', delta=1.0}) = delta * smooth_l1_loss(beta=delta)
function F.huber_loss(x, t, opts)
  local delta = type(opts) == 'table' and opts.delta or 1.0
  local red = type(opts) == 'table' and (opts.reduction or 'mean') or opts
  local l = F.smooth_l1_loss(x, t, { reduction = red, beta = delta })
  if delta == 1 then return l end
  return l * delta
end

-- a class-weight tensor where PyTorch's positional weight argument sits becomes {weight=...}
local function weight_opts(opts)
  if is_tensor(opts) then return { weight = opts } end
  return opts
end

-- nll_loss(input, target, {weight=nil, ignore_index=-100, reduction='mean'}) (or nll_loss(input, target, weight))
function F.nll_loss(x, target, opts)
  need_tensor(x, 'input', 'nll_loss')
  need_tensor(target, 'target', 'nll_loss')
  opts = weight_opts(opts)
  local o = type(opts) == 'table' and opts or {}
  return call5(C.ddpm_nll_loss, x, target, optional_tensor(o.weight, 'weight', 'nll_loss'), o.ignore_index or -100,
    reduction_of(opts, 'nll_loss'))
end

-- cross_entropy(input, target, {weight=nil, ignore_index=-100, reduction='mean', label_smoothing=0.0}):
-- log_softmax over the class dim (1, or 0 for an unbatched [C] input), then class-index targets (int64)
-- through nll_loss, or class-probability targets (input's shape and dtype) through a weighted sum.
-- Label smoothing follows PyTorch exactly: (1 - ls) * nll + ls / C * smooth term.
function F.cross_entropy(x, target, opts)
  local op = 'cross_entropy'
  need_tensor(x, 'input', op)
  need_tensor(target, 'target', op)
  opts = weight_opts(opts)
  local o = type(opts) == 'table' and opts or {}
  local red = reduction_of(opts, op)
  local ls = o.label_smoothing or 0
  if type(ls) ~= 'number' or ls < 0 or ls > 1 then raise(op .. ': label_smoothing must be between 0 and 1') end
  local weight = optional_tensor(o.weight, 'weight', op)
  local nd = x:dim()
  if nd == 0 then raise(op .. ': input must have at least 1 dim (classes)') end
  local cdim = nd == 1 and 0 or 1
  local C_ = x:size(cdim)
  local logp = F.log_softmax(x, cdim)
  -- weight broadcast along the class dim: [C] -> [1, C, 1, ...]
  local function class_weight()
    local s = {}
    for d = 1, nd do s[d] = 1 end
    s[cdim + 1] = C_
    return weight:view(s)
  end
  if target.dtype.is_floating_point then -- class probabilities
    local ts, xs = target:shape(), x:shape()
    local same = #ts == #xs
    for d = 1, #xs do same = same and ts[d] == xs[d] end
    if not same then
      raise(string.format('%s: probability targets must have the input shape [%s], got [%s]', op,
        table.concat(xs, ', '), table.concat(ts, ', ')))
    end
    local t = target
    if ls > 0 then t = t * (1 - ls) + ls / C_ end
    local prod = logp * t
    if weight then prod = prod * class_weight() end
    local loss = -prod:sum(cdim)
    if red == 0 then return loss end
    if red == 2 then return loss:sum() end
    return loss:sum() / (x:numel() / C_)
  end
  local ignore = o.ignore_index or -100
  local nll = F.nll_loss(logp, target, { weight = weight, ignore_index = ignore, reduction = ({ 'none', 'mean', 'sum' })[red + 1] })
  if ls == 0 then return nll end
  local smooth
  if weight then smooth = -(logp * class_weight()):sum(cdim) else smooth = -logp:sum(cdim) end
  local keep = target:ne(scalar(ignore, target))
  smooth = smooth * keep:to(smooth.dtype)
  local ret
  if red == 1 then
    if weight then
      local tw = weight:index_select(0, (target * keep:long()):reshape(-1)):view(target:shape())
      ret = smooth:sum() / (tw * keep:to(tw.dtype)):sum()
    else
      ret = smooth:sum() / keep:to(smooth.dtype):sum()
    end
  elseif red == 2 then
    ret = smooth:sum()
  else
    ret = smooth
  end
  return nll * (1 - ls) + ret * (ls / C_)
end

-- ---- embedding and one_hot -------------------------------------------------------------------------------------------------
-- one_hot(tensor, num_classes=-1): int64 [..., num_classes]
function F.one_hot(idx, num_classes)
  need_tensor(idx, 'input', 'one_hot')
  return call2(C.ddpm_one_hot, idx, num_classes or -1)
end

-- embedding(input, weight, {padding_idx=nil}): rows of weight gathered by the int64 indices in input;
-- the padding_idx row takes no gradient, as in PyTorch.
function F.embedding(idx, weight, opts)
  need_tensor(idx, 'input', 'embedding')
  need_tensor(weight, 'weight', 'embedding')
  if idx.dtype ~= ddpm.int64 and idx.dtype ~= ddpm.int32 then
    raise('embedding: input must hold int64 indices, got ' .. tostring(idx.dtype))
  end
  if weight:dim() ~= 2 then raise('embedding: weight must be 2-D [num_embeddings, embedding_dim]') end
  local shape = idx:shape()
  shape[#shape + 1] = weight:size(1)
  local out = weight:index_select(0, idx:reshape(-1)):view(shape)
  local pad = nil
  if type(opts) == 'number' then pad = opts elseif type(opts) == 'table' then pad = opts.padding_idx end
  if pad ~= nil then
    if pad < 0 then pad = pad + weight:size(0) end
    out = ddpm.where(idx:ne(scalar(pad, idx)):unsqueeze(-1), out, out:detach())
  end
  return out
end

-- ---- tensor methods ------------------------------------------------------------------------------------------------------------
methods.silu = F.silu
methods.gelu = F.gelu
methods.softmax = F.softmax
methods.log_softmax = F.log_softmax

return F
