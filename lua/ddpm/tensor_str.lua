-- tensor_str.lua: tostring(t) the way PyTorch prints tensors (torch/_tensor_str.py): shared
-- width, integer-valued floats as "6.", 4 decimals or scientific notation, summarised with
-- "..." above 1000 elements, and dtype/device/grad suffixes.
local D = require 'ddpm.dtype'

local PRECISION, THRESHOLD, EDGEITEMS, LINEWIDTH = 4, 1000, 3, 80

return function(T)
  local m = T.methods

  local function fmt_number(v, mode)
    if v ~= v then return 'nan' end
    if v == math.huge then return 'inf' end
    if v == -math.huge then return '-inf' end
    if mode == 'int' then return string.format('%d', v) end
    if mode == 'bool' then return v ~= 0 and 'True' or 'False' end
    if mode == 'intfloat' then return string.format('%.0f.', v) end
    if mode == 'sci' then
      local s = string.format('%.' .. PRECISION .. 'e', v)
      return (s:gsub('e([+-])(%d)$', 'e%10%2')) -- two-digit exponents, as Python prints them
    end
    return string.format('%.' .. PRECISION .. 'f', v)
  end

  -- choose the formatting mode from the values actually shown
  local function pick_mode(vals, dtype)
    if dtype.name == 'bool' then return 'bool' end
    if not dtype.is_floating_point then return 'int' end
    local mn, mx, allint, any = math.huge, 0, true, false
    for _, v in ipairs(vals) do
      if v == v and v ~= math.huge and v ~= -math.huge then
        if v ~= math.floor(v) then allint = false end
        local a = math.abs(v)
        if a ~= 0 then
          any = true
          if a < mn then mn = a end
          if a > mx then mx = a end
        end
      end
    end
    if not any then return allint and 'intfloat' or 'float' end
    if allint then
      if mx / mn > 1000 or mx > 1e8 then return 'sci' end
      return 'intfloat'
    end
    if mx / mn > 1000 or mx > 1e8 or mn < 1e-4 then return 'sci' end
    return 'float'
  end

  local function tensor_str(t)
    local dtype = t.dtype
    local shape = m.shape(t)
    local numel = m.numel(t)
    local summarize = numel > THRESHOLD
    local flat = numel > 0 and m.totable_flat(t) or {}
    local nd = #shape
    local strides = {}
    local s = 1
    for i = nd, 1, -1 do
      strides[i] = s
      s = s * shape[i]
    end
    -- indices shown along dim d (1-based), with false marking the "..."
    local function shown(d)
      local n = shape[d]
      local r = {}
      if summarize and n > 2 * EDGEITEMS then
        for i = 1, EDGEITEMS do r[#r + 1] = i end
        r[#r + 1] = false
        for i = n - EDGEITEMS + 1, n do r[#r + 1] = i end
      else
        for i = 1, n do r[#r + 1] = i end
      end
      return r
    end
    -- collect the values that will be printed, to choose mode and width
    local vis = {}
    local function collect(d, base)
      if d > nd then
        vis[#vis + 1] = flat[base + 1]
        return
      end
      for _, i in ipairs(shown(d)) do if i then collect(d + 1, base + (i - 1) * strides[d]) end end
    end
    if numel > 0 then collect(1, 0) end
    local mode = pick_mode(vis, dtype)
    local width = 0
    for _, v in ipairs(vis) do width = math.max(width, #fmt_number(v, mode)) end
    local function cell(v)
      local sv = fmt_number(v, mode)
      return string.rep(' ', width - #sv) .. sv
    end

    local prefix = 'tensor('
    local indent = #prefix
    local body
    if nd == 0 then
      body = fmt_number(flat[1], mode)
    elseif numel == 0 then
      body = '[]'
    else
      local function render(d, base, ind)
        if d == nd then
          local items = {}
          for _, i in ipairs(shown(d)) do
            items[#items + 1] = i and cell(flat[base + (i - 1) * strides[d] + 1]) or '...'
          end
          -- wrap long rows like PyTorch: as many items per line as fit the line width
          local per = math.max(1, math.floor((LINEWIDTH - ind) / (width + 2)))
          local lines = {}
          for k = 1, #items, per do
            local chunk = {}
            for j = k, math.min(k + per - 1, #items) do chunk[#chunk + 1] = items[j] end
            lines[#lines + 1] = table.concat(chunk, ', ')
          end
          return '[' .. table.concat(lines, ',\n' .. string.rep(' ', ind + 1)) .. ']'
        end
        local parts = {}
        for _, i in ipairs(shown(d)) do
          if i then
            parts[#parts + 1] = render(d + 1, base + (i - 1) * strides[d], ind + 1)
          else
            parts[#parts + 1] = '...'
          end
        end
        local sep = ',' .. string.rep('\n', nd - d) .. string.rep(' ', ind + 1)
        return '[' .. table.concat(parts, sep) .. ']'
      end
      body = render(1, 0, indent)
    end
    local suffix = {}
    if numel == 0 and nd ~= 1 then
      suffix[#suffix + 1] = 'size=(' .. table.concat(shape, ', ') .. (nd == 1 and ',' or '') .. ')'
    end
    local dev = t.device
    if dev.type ~= 'cpu' then suffix[#suffix + 1] = "device='" .. tostring(dev) .. "'" end
    local default = (dtype.name == 'float32' or dtype.name == 'int64' or dtype.name == 'bool')
    if not default then suffix[#suffix + 1] = 'dtype=ddpm.' .. dtype.name end
    local gf = t.grad_fn
    if gf then
      suffix[#suffix + 1] = 'grad_fn=<' .. gf .. '>'
    elseif t.requires_grad then
      suffix[#suffix + 1] = 'requires_grad=True'
    end
    local out = prefix .. body
    if #suffix > 0 then out = out .. ', ' .. table.concat(suffix, ', ') end
    return out .. ')'
  end
  return tensor_str
end
