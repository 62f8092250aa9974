-- nn/pyrepr.lua: Python's repr of floats, ints, bools and tuples, so module printouts and saved
-- configs read exactly as PyTorch/diffusers write them (eps=1e-05, p=0.0, (3, 3), True).
local M = {}

-- repr(float(x)): the shortest digits that round-trip, fixed notation for 1e-4 <= |x| < 1e16,
-- otherwise d.ddde±XX (two exponent digits at least), and always a '.0' on integral values.
function M.float(x)
  if x ~= x then return 'nan' end
  if x == math.huge then return 'inf' end
  if x == -math.huge then return '-inf' end
  if x == 0 then return (1 / x < 0) and '-0.0' or '0.0' end
  local sign = x < 0 and '-' or ''
  local ax = math.abs(x)
  local s
  for p = 0, 16 do
    s = string.format('%.' .. p .. 'e', ax)
    if tonumber(s) == ax then break end
  end
  local mant, exp = s:match('^([%d%.]+)e([-+]%d+)$')
  local digits = mant:gsub('%.', ''):gsub('0+$', '')
  if digits == '' then digits = '0' end
  local decpt = tonumber(exp) + 1 -- digits are 0.DIGITS x 10^decpt
  if decpt <= -4 or decpt > 16 then
    local e = decpt - 1
    local m = digits:sub(1, 1)
    if #digits > 1 then m = m .. '.' .. digits:sub(2) end
    return string.format('%s%se%s%02d', sign, m, e < 0 and '-' or '+', math.abs(e))
  end
  local body
  if decpt <= 0 then
    body = '0.' .. string.rep('0', -decpt) .. digits
  elseif decpt >= #digits then
    body = digits .. string.rep('0', decpt - #digits) .. '.0'
  else
    body = digits:sub(1, decpt) .. '.' .. digits:sub(decpt + 1)
  end
  return sign .. body
end

-- repr(int(x))
function M.int(x) return string.format('%d', x) end

-- a number as Python would show it when it may be an int or a float: integral -> int
function M.number(x)
  if x == math.floor(x) and math.abs(x) < 2 ^ 53 then return M.int(x) end
  return M.float(x)
end

function M.bool(b) return b and 'True' or 'False' end

-- repr(tuple): (3, 3), (128,), ()
function M.tuple(t, fmt)
  fmt = fmt or M.number
  local parts = {}
  for i, v in ipairs(t) do parts[i] = fmt(v) end
  if #parts == 1 then return '(' .. parts[1] .. ',)' end
  return '(' .. table.concat(parts, ', ') .. ')'
end

-- repr(str)
function M.str(s) return "'" .. s .. "'" end

return M
