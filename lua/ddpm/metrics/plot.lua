-- metrics/plot.lua: line charts of experiment results as uint8 images, drawn with tensor ops (no
-- plotting library): axes, ticks with numbers, grid lines, anti-aliased lines with round markers,
-- a title and a legend, in the bitmap font of ddpm.utils.font.  Each primitive works on the small
-- crop of the canvas it touches, so a chart costs a few hundred tensor ops.
--
--   local img = plot.line_chart{ title = 'class accuracy', xlabel = 'guidance scale',
--     series = { { name = 'p=0', x = {1, 2, 4}, y = {0.5, 0.6, 0.7} }, ... }, ylim = {0, 1} }
--   plot.save(plot.hstack({ img, img2 }), 'plot.png')
local ddpm = require 'ddpm'
local font = require 'ddpm.utils.font'
local raise = require('ddpm.ffi').raise

local M = {}

-- colours for successive series (Tableau 10), 0..255
M.PALETTE = { { 31, 119, 180 }, { 255, 127, 14 }, { 44, 160, 44 }, { 214, 39, 40 }, { 148, 103, 189 },
  { 140, 86, 75 }, { 227, 119, 194 }, { 127, 127, 127 }, { 188, 189, 34 }, { 23, 190, 207 } }

-- a float canvas [H, W, 3] in 0..255, white
function M.canvas(w, h) return ddpm.full({ h, w, 3 }, 255) end

local function color_tensor(c) return ddpm.tensor({ c[1], c[2], c[3] }):view(1, 1, 3) end

-- fill_rect(canvas, x, y, w, h, color), clipped
function M.fill_rect(cv, x, y, w, h, color)
  local H, W = cv:size(0), cv:size(1)
  x, y = math.floor(x), math.floor(y)
  local x0, y0 = math.max(0, x), math.max(0, y)
  local x1, y1 = math.min(W, x + math.floor(w)), math.min(H, y + math.floor(h))
  if x1 <= x0 or y1 <= y0 then return cv end
  cv:narrow(0, y0, y1 - y0):narrow(1, x0, x1 - x0):copy_(color_tensor(color):expand(y1 - y0, x1 - x0, 3))
  return cv
end

-- paint the crop [x0, x1) x [y0, y1) with colour where coverage(px, py) (0..1) says, blending
local function paint(cv, x0, y0, x1, y1, color, coverage)
  local H, W = cv:size(0), cv:size(1)
  x0, y0 = math.max(0, math.floor(x0)), math.max(0, math.floor(y0))
  x1, y1 = math.min(W, math.ceil(x1)), math.min(H, math.ceil(y1))
  if x1 <= x0 or y1 <= y0 then return end
  local px = (ddpm.arange(x0, x1, { dtype = ddpm.float32 }) + 0.5):view(1, x1 - x0)
  local py = (ddpm.arange(y0, y1, { dtype = ddpm.float32 }) + 0.5):view(y1 - y0, 1)
  local a = coverage(px, py):clamp(0, 1):unsqueeze(2)
  local crop = cv:narrow(0, y0, y1 - y0):narrow(1, x0, x1 - x0)
  crop:copy_(crop * (1 - a) + color_tensor(color) * a)
end

-- line(canvas, x0, y0, x1, y1, color, width): an anti-aliased segment with round caps
function M.line(cv, ax, ay, bx, by, color, width)
  local r = (width or 2) / 2
  local dx, dy = bx - ax, by - ay
  local len2 = dx * dx + dy * dy
  paint(cv, math.min(ax, bx) - r - 1, math.min(ay, by) - r - 1, math.max(ax, bx) + r + 2, math.max(ay, by) + r + 2, color,
    function(px, py)
      local t
      if len2 == 0 then
        t = ddpm.zeros(1, 1)
      else
        t = (((px - ax) * dx + (py - ay) * dy) / len2):clamp(0, 1)
      end
      local qx, qy = (t * dx + ax), (t * dy + ay)
      local d = ((px - qx):square() + (py - qy):square()):sqrt()
      return (d * -1) + (r + 0.5)
    end)
  return cv
end

-- disc(canvas, x, y, radius, color): a filled, anti-aliased circle
function M.disc(cv, cx, cy, radius, color)
  paint(cv, cx - radius - 1, cy - radius - 1, cx + radius + 2, cy + radius + 2, color, function(px, py)
    local d = ((px - cx):square() + (py - cy):square()):sqrt()
    return (d * -1) + (radius + 0.5)
  end)
  return cv
end

-- text(canvas, s, x, y, {scale=1, color={0,0,0}, align='left'|'center'|'right'})
function M.text(cv, s, x, y, opts)
  opts = opts or {}
  local sc = opts.scale or 1
  local w = font.text_width(s, sc)
  if opts.align == 'center' then x = x - w / 2 elseif opts.align == 'right' then x = x - w end
  x, y = math.floor(x), math.floor(y)
  if x < 0 or y < 0 or x + w > cv:size(1) or y + font.height * sc > cv:size(0) then return cv end
  -- the font draws one grey level; draw on a mask and paint it in the colour
  local mask = ddpm.zeros(font.height * sc, w + sc, 1)
  font.draw(mask, s, 0, 0, { scale = sc, color = 1 })
  local crop = cv:narrow(0, y, font.height * sc):narrow(1, x, w + sc)
  crop:copy_(crop * (1 - mask) + color_tensor(opts.color or { 0, 0, 0 }) * mask)
  return cv
end

-- nice_ticks(lo, hi, n=5) -> ticks covering [lo, hi] with a step of 1, 2 or 5 times a power of ten
function M.nice_ticks(lo, hi, n)
  n = n or 5
  if hi <= lo then hi = lo + 1 end
  local raw = (hi - lo) / n
  local p = 10 ^ math.floor(math.log10(raw))
  local step = p
  for _, m in ipairs({ 1, 2, 5, 10 }) do
    if m * p >= raw then step = m * p break end
  end
  local t, first = {}, math.floor(lo / step + 1e-9) * step
  local v = first
  while v <= hi + step * 1e-9 do
    t[#t + 1] = v
    v = v + step
  end
  if t[#t] < hi then t[#t + 1] = t[#t] + step end
  return t, step
end

local function fmt(v, step)
  if v == math.floor(v) and (step == nil or step >= 1) then return string.format('%d', v) end
  if not step then return string.format('%g', v) end
  local digits = math.max(0, -math.floor(math.log10(step) + 1e-9))
  return string.format('%.' .. digits .. 'f', v)
end
M.format_tick = fmt

-- line_chart{series={{name=, x={...}, y={...}, color=}}, title=, xlabel=, ylabel=, xticks=, ylim=,
--   width=360, height=270, legend=true} -> uint8 image [H, W, 3]
function M.line_chart(o)
  if type(o) ~= 'table' or type(o.series) ~= 'table' or #o.series == 0 then
    raise('plot.line_chart: expected {series = {{name=, x={...}, y={...}}, ...}}')
  end
  local W, H = o.width or 360, o.height or 270
  local cv = M.canvas(W, H)
  local xs, ys = {}, {}
  for i, s in ipairs(o.series) do
    if type(s.x) ~= 'table' or type(s.y) ~= 'table' or #s.x ~= #s.y then
      raise(string.format('plot.line_chart: series %d needs x and y lists of the same length', i))
    end
    for k = 1, #s.x do
      if s.y[k] == s.y[k] and s.y[k] ~= nil then
        xs[#xs + 1], ys[#ys + 1] = s.x[k], s.y[k]
      end
    end
  end
  if #xs == 0 then raise('plot.line_chart: no finite points to draw') end
  local xmin, xmax = math.min(unpack(xs)), math.max(unpack(xs))
  local ymin, ymax = math.min(unpack(ys)), math.max(unpack(ys))
  if o.ylim then ymin, ymax = o.ylim[1], o.ylim[2] end
  local yt, ystep = M.nice_ticks(ymin, ymax, 5)
  ymin, ymax = yt[1], yt[#yt]
  local xt = o.xticks or xs
  if xmax == xmin then xmin, xmax = xmin - 1, xmax + 1 end
  -- plot area
  local left, right, top, bottom = 44, 22, 24, 34
  local pw, ph = W - left - right, H - top - bottom
  local function X(v) return left + (v - xmin) / (xmax - xmin) * pw end
  local function Y(v) return top + ph - (v - ymin) / (ymax - ymin) * ph end
  local grid, axis, ink = { 225, 225, 225 }, { 60, 60, 60 }, { 0, 0, 0 }
  for _, v in ipairs(yt) do
    M.fill_rect(cv, left, math.floor(Y(v)), pw, 1, grid)
    M.text(cv, fmt(v, ystep), left - 4, Y(v) - 3, { align = 'right', color = ink })
  end
  local seen = {}
  for _, v in ipairs(xt) do
    if not seen[v] then
      seen[v] = true
      M.fill_rect(cv, math.floor(X(v)), top, 1, ph, grid)
      M.fill_rect(cv, math.floor(X(v)), top + ph, 1, 4, axis)
      M.text(cv, fmt(v), X(v), top + ph + 7, { align = 'center', color = ink })
    end
  end
  M.fill_rect(cv, left, top, 1, ph + 1, axis)
  M.fill_rect(cv, left, top + ph, pw + 1, 1, axis)
  if o.title then M.text(cv, o.title, left + pw / 2, 6, { align = 'center', color = ink }) end
  if o.ylabel then M.text(cv, o.ylabel, 4, 6, { color = { 90, 90, 90 } }) end
  if o.xlabel then M.text(cv, o.xlabel, left + pw / 2, H - 12, { align = 'center', color = { 90, 90, 90 } }) end
  for i, s in ipairs(o.series) do
    local c = s.color or M.PALETTE[(i - 1) % #M.PALETTE + 1]
    local prev
    for k = 1, #s.x do
      local y = s.y[k]
      if y ~= nil and y == y then
        local p = { X(s.x[k]), Y(y) }
        if prev then M.line(cv, prev[1], prev[2], p[1], p[2], c, 2) end
        prev = p
      else
        prev = nil
      end
    end
    for k = 1, #s.x do
      local y = s.y[k]
      if y ~= nil and y == y then M.disc(cv, X(s.x[k]), Y(y), 3, c) end
    end
  end
  return cv:clamp(0, 255):round():byte()
end

-- legend(entries={{name=, color=}}, width) -> uint8 image: a row of colour samples and names
function M.legend(entries, width)
  local h = 22
  local cv = M.canvas(width, h)
  local x = 10
  for i, e in ipairs(entries) do
    local c = e.color or M.PALETTE[(i - 1) % #M.PALETTE + 1]
    M.line(cv, x, h / 2, x + 18, h / 2, c, 2)
    M.disc(cv, x + 9, h / 2, 3, c)
    M.text(cv, e.name, x + 24, h / 2 - 3, { color = { 0, 0, 0 } })
    x = x + 24 + font.text_width(e.name) + 16
  end
  return cv:clamp(0, 255):round():byte()
end

-- hstack({img, ...}) / vstack({img, ...}): uint8 images side by side / on top of each other (padded
-- with white to the largest size)
function M.hstack(imgs)
  local h = 0
  for _, im in ipairs(imgs) do h = math.max(h, im:size(0)) end
  local parts = {}
  for i, im in ipairs(imgs) do
    if im:size(0) < h then
      im = ddpm.cat({ im, ddpm.full({ h - im:size(0), im:size(1), 3 }, 255, { dtype = ddpm.uint8 }) }, 0)
    end
    parts[i] = im
  end
  return ddpm.cat(parts, 1)
end

function M.vstack(imgs)
  local w = 0
  for _, im in ipairs(imgs) do w = math.max(w, im:size(1)) end
  local parts = {}
  for i, im in ipairs(imgs) do
    if im:size(1) < w then
      im = ddpm.cat({ im, ddpm.full({ im:size(0), w - im:size(1), 3 }, 255, { dtype = ddpm.uint8 }) }, 1)
    end
    parts[i] = im
  end
  return ddpm.cat(parts, 0)
end

function M.save(img, path) require('ddpm.io.png').save(path, img) end

return M
