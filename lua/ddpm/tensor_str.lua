-- tensor_str.lua: tostring(t) the way PyTorch prints tensors (torch/_tensor_str.py): one
-- formatter per tensor (width and mode chosen from the nonzero finite values shown), integer-
-- valued floats as "6.", 4 decimals or scientific notation, rows wrapped at 80 columns,
-- summarised with "..." above 1000 elements, and device/size/dtype/grad suffixes.
local F = require 'ddpm.ffi'
local ffi, C = F.ffi, F.C

local PRECISION, THRESHOLD, EDGEITEMS, LINEWIDTH = 4, 1000, 3, 80

local isnan = function(v) return v ~= v end
local function isinf(v) return v == math.huge or v == -math.huge end

-- ---- the formatter (PyTorch's _Formatter) --------------------------------------------------------
local function new_formatter(vals, dtype)
  local f = { floating = dtype.is_floating_point, bool = dtype.name == 'bool', int_mode = true, sci = false, width = 1 }
  if not f.floating then
    for _, v in ipairs(vals) do
      local s = f.bool and (v ~= 0 and 'True' or 'False') or string.format('%d', v)
      if #s > f.width then f.width = #s end
    end
    return f
  end
  local mn, mx, nz = math.huge, 0, {}
  for _, v in ipairs(vals) do
    if v == v and not isinf(v) and v ~= 0 then
      nz[#nz + 1] = v
      local a = math.abs(v)
      if a < mn then mn = a end
      if a > mx then mx = a end
      if v ~= math.ceil(v) then f.int_mode = false end
    end
  end
  if #nz == 0 then return f end -- only zeros, inf and nan: width 1, integer mode
  local fmt, extra
  if f.int_mode then
    if mx / mn > 1000 or mx > 1e8 then f.sci, fmt, extra = true, '%.' .. PRECISION .. 'e', 0
    else fmt, extra = '%.0f', 1 end
  else
    if mx / mn > 1000 or mx > 1e8 or mn < 1e-4 then f.sci, fmt, extra = true, '%.' .. PRECISION .. 'e', 0
    else fmt, extra = '%.' .. PRECISION .. 'f', 0 end
  end
  for _, v in ipairs(nz) do
    local n = #string.format(fmt, v) + extra
    if n > f.width then f.width = n end
  end
  return f
end

-- one value, right-aligned to the formatter's width (never truncated: nan/inf may be wider)
local function format_value(f, v)
  local s
  if not f.floating then
    s = f.bool and (v ~= 0 and 'True' or 'False') or string.format('%d', v)
  elseif isnan(v) then
    s = 'nan'
  elseif isinf(v) then
    s = v > 0 and 'inf' or '-inf'
  elseif f.sci then
    s = string.format('%.' .. PRECISION .. 'e', v)
  elseif f.int_mode then
    s = string.format('%.0f', v) .. '.'
  else
    s = string.format('%.' .. PRECISION .. 'f', v)
  end
  if #s < f.width then s = string.rep(' ', f.width - #s) .. s end
  return s
end

-- PyTorch's _add_suffixes: a suffix that would pass the line width goes on its own line
local function add_suffixes(str, suffixes, indent)
  local parts = { str }
  local nl = str:match('.*()\n')
  local last = #str - (nl and nl - 1 or -1) + 1
  for _, s in ipairs(suffixes) do
    if last + #s + 2 > LINEWIDTH then
      parts[#parts + 1] = ',\n' .. string.rep(' ', indent) .. s
      last = indent + #s
    else
      parts[#parts + 1] = ', ' .. s
      last = last + #s + 2
    end
  end
  parts[#parts + 1] = ')'
  return table.concat(parts)
end

return function(T)
  local m = T.methods
  local list2 = ffi.new('ddpm_tensor*[2]')

  -- The first and last EDGEITEMS of every long dim, as one small tensor (get_summarized_data),
  -- so printing a huge tensor reads only what is shown.
  local function summarized(t, shape)
    local cur, cut = t, {}
    for d = 1, #shape do
      local n = shape[d]
      if n > 2 * EDGEITEMS then
        local head = T.call4(C.ddpm_narrow, cur, d - 1, 0, EDGEITEMS)
        local tail = T.call4(C.ddpm_narrow, cur, d - 1, n - EDGEITEMS, EDGEITEMS)
        list2[0], list2[1] = head, tail
        cur = T.call3(C.ddpm_cat, 2, list2, d - 1)
        cut[d] = true
      end
    end
    return cur, cut
  end

  local function tensor_str(t)
    local dtype = t.dtype
    local shape = m.shape(t)
    local nd, numel = #shape, m.numel(t)
    local prefix = 'tensor('
    local indent = #prefix
    local body, suffixes = nil, {}
    local dev = t.device
    if dev.type ~= 'cpu' then suffixes[#suffixes + 1] = "device='" .. tostring(dev) .. "'" end
    if numel == 0 then
      body = '[]'
      if nd ~= 1 then suffixes[#suffixes + 1] = 'size=(' .. table.concat(shape, ', ') .. (nd == 1 and ',' or '') .. ')' end
      -- an empty tensor shows no values to tell int64 from float32, so any non-default dtype is named
      if dtype.name ~= 'float32' then suffixes[#suffixes + 1] = 'dtype=ddpm.' .. dtype.name end
    else
      if not (dtype.name == 'float32' or dtype.name == 'int64' or dtype.name == 'bool') then
        suffixes[#suffixes + 1] = 'dtype=ddpm.' .. dtype.name
      end
      local small, cut = t, {}
      if numel > THRESHOLD then
        local prev = C.ddpm_grad_enabled()
        C.ddpm_set_grad_enabled(0) -- the narrow/cat views must not join an autograd graph
        local ok, a, b = pcall(summarized, t, shape)
        C.ddpm_set_grad_enabled(prev)
        if not ok then error(a, 0) end
        small, cut = a, b
      end
      local sshape = m.shape(small)
      local flat = m.totable_flat(small)
      local f = new_formatter(flat, dtype)
      local strides, s = {}, 1
      for i = nd, 1, -1 do
        strides[i] = s
        s = s * sshape[i]
      end
      -- indices shown along dim d (1-based into the summarised tensor), false marking "..."
      local function shown(d)
        local r = {}
        if cut[d] then
          for i = 1, EDGEITEMS do r[#r + 1] = i end
          r[#r + 1] = false
          for i = EDGEITEMS + 1, 2 * EDGEITEMS do r[#r + 1] = i end
        else
          for i = 1, sshape[d] do r[#r + 1] = i end
        end
        return r
      end
      local function render(d, base, ind)
        if d == nd then
          local items = {}
          for _, i in ipairs(shown(d)) do
            items[#items + 1] = i and format_value(f, flat[base + (i - 1) * strides[d] + 1]) or ' ...'
          end
          local per = math.max(1, math.floor((LINEWIDTH - ind) / (f.width + 2)))
          local lines = {}
          for k = 1, #items, per do
            lines[#lines + 1] = table.concat(items, ', ', k, math.min(k + per - 1, #items))
          end
          return '[' .. table.concat(lines, ',\n' .. string.rep(' ', ind + 1)) .. ']'
        end
        local parts = {}
        for _, i in ipairs(shown(d)) do
          parts[#parts + 1] = i and render(d + 1, base + (i - 1) * strides[d], ind + 1) or '...'
        end
        return '[' .. table.concat(parts, ',' .. string.rep('\n', nd - d) .. string.rep(' ', ind + 1)) .. ']'
      end
      body = nd == 0 and format_value(f, flat[1]) or render(1, 0, indent)
    end
    local gf = t.grad_fn
    if gf then
      suffixes[#suffixes + 1] = 'grad_fn=<' .. gf .. '>'
    elseif t.requires_grad then
      suffixes[#suffixes + 1] = 'requires_grad=True'
    end
    return add_suffixes(prefix .. body, suffixes, indent)
  end
  return tensor_str
end
