-- progress.lua: a tqdm-like progress bar for loops:
--
--   for step, batch in ddpm.utils.progress(loader, { desc = 'epoch 3' }) do ... end
--   for i in ddpm.utils.progress(1000) do ... end              -- i = 1..1000
--   local bar = ddpm.utils.progress(nil, { total = 500, unit = 'img' })
--   bar:update(16); bar:set_postfix({ loss = 0.0123 }); bar:close()
--
-- The iterable: a count n (yields 1..n), an array (yields i, v as ipairs), an iterator function
-- (a closure, or the triple f, s, c that a generic for takes), or an object with an :iter()
-- method (or __call) whose length comes from :len() or __len.  A step is counted when the loop
-- asks for the next item, i.e. when the body has finished, as in tqdm.
--
-- Output goes to io.stdout unless opts.file says otherwise.  On a terminal the bar redraws in
-- place (carriage return) at most every opts.mininterval seconds (0.1); otherwise, e.g. in a log
-- file, it writes a plain line every opts.log_percent percent (10) or opts.log_every seconds (30).
-- Options: desc, total, unit ('it'), file, leave (keep the final bar, true), disable, ncols,
-- mininterval, log_percent, log_every, smoothing (0.3, as tqdm), ascii, tty (force the mode),
-- clock (a function returning seconds; for tests).
-- After a `break` out of the loop call bar:close() to finish the line.
local term = require 'ddpm.utils.term'
local raise = require('ddpm.ffi').raise

local Bar = {}
Bar.__index = Bar

-- ---- formatting ----------------------------------------------------------------------------------
local function fmt_time(t)
  if t == nil or t ~= t or t == math.huge then return '?' end
  t = math.floor(t + 0.5)
  local h, m, s = math.floor(t / 3600), math.floor(t / 60) % 60, t % 60
  if h > 0 then return string.format('%d:%02d:%02d', h, m, s) end
  return string.format('%02d:%02d', m, s)
end
Bar.format_time = fmt_time

local function fmt_rate(rate, unit)
  if not rate or rate <= 0 then return '?' .. unit .. '/s' end
  if rate >= 1 then return string.format('%.2f%s/s', rate, unit) end
  return string.format('%.2fs/%s', 1 / rate, unit)
end

local function fmt_num(v)
  if type(v) == 'number' then
    if v == math.floor(v) and math.abs(v) < 1e15 then return string.format('%d', v) end
    return string.format('%.4g', v)
  end
  if type(v) == 'cdata' then
    local ok, x = pcall(function() return v:item() end) -- a one-element tensor
    if ok and type(x) == 'number' then return fmt_num(x) end
  end
  return tostring(v)
end

-- display width of a UTF-8 string (continuation bytes take no column)
local function width(s)
  local _, cont = s:gsub('[\128-\191]', '')
  return #s - cont
end

local BLOCKS = { '▏', '▎', '▍', '▌', '▋', '▊', '▉' }
local function bar_graphic(frac, cols, ascii)
  frac = math.max(0, math.min(1, frac))
  if ascii then
    local full = math.floor(frac * cols)
    return string.rep('#', full) .. string.rep(' ', cols - full)
  end
  local eighths = math.floor(frac * cols * 8)
  local full, part = math.floor(eighths / 8), eighths % 8
  local s = string.rep('█', full)
  if full < cols then s = s .. (part > 0 and BLOCKS[part] or ' ') .. string.rep(' ', cols - full - 1) end
  return s
end

-- ---- the bar ---------------------------------------------------------------------------------------------------
local function length_of(obj)
  local mt = getmetatable(obj)
  if type(obj) == 'table' and type(obj.len) == 'function' then return obj:len() end
  if mt and mt.__len then return mt.__len(obj) end
  if not mt then return #obj end
  return nil
end

-- a generic-for triple as one function; the control value advances as in a for loop
local function triple(f, s, c)
  local ctl = c
  local function advance(a, ...)
    ctl = a
    return a, ...
  end
  return function() return advance(f(s, ctl)) end
end

-- the iterator the for loop drives, and the total it implies
local function source(iterable, s, c)
  local ti = type(iterable)
  if iterable == nil then return nil, nil end
  if ti == 'number' then
    local i, n = 0, math.floor(iterable)
    return function()
      i = i + 1
      if i <= n then return i end
    end, n
  end
  if ti == 'function' then return triple(iterable, s, c), nil end
  if ti == 'table' then
    local mt = getmetatable(iterable)
    if type(iterable.iter) == 'function' then return triple(iterable:iter()), length_of(iterable) end
    if mt and mt.__call then return function() return iterable() end, length_of(iterable) end
    local i, n = 0, #iterable
    return function()
      i = i + 1
      if i <= n then return i, iterable[i] end
    end, n
  end
  raise(string.format('progress: cannot iterate over a %s (expected a count, an array, an iterator function or an object with :iter())', ti))
end

function Bar.new(iterable, opts, s, c)
  opts = opts or {}
  local self = setmetatable({}, Bar)
  local nxt, total = source(iterable, s, c)
  self._next = nxt
  self.total = opts.total or total
  self.desc = opts.desc
  self.unit = opts.unit or 'it'
  self.file = opts.file or io.stdout
  self.leave = opts.leave ~= false
  self.disable = opts.disable and true or false
  self.clock = opts.clock or term.now
  self.mininterval = opts.mininterval or 0.1
  self.log_percent = opts.log_percent or 10
  self.log_every = opts.log_every or 30
  self.smoothing = opts.smoothing or 0.3
  self.ncols = opts.ncols
  if opts.tty ~= nil then self.tty = opts.tty else self.tty = term.isatty(self.file) end
  if opts.ascii ~= nil then self.ascii = opts.ascii else self.ascii = not term.utf8() end
  self.n = 0
  self.postfix = nil
  self.start = self.clock()
  self._last_t, self._last_n = self.start, 0
  self._printed_n, self._printed_bucket = -1, 0
  self.closed = false
  if self.tty and not self.disable then self:refresh() end
  return self
end

function Bar:elapsed() return self.clock() - self.start end

-- items per second: an exponential moving average of recent speed (tqdm's smoothing), so a slow
-- first step (warm-up, compilation) does not skew the ETA for long
function Bar:_measure(now)
  local dt, dn = now - self._last_t, self.n - self._last_n
  if dt > 0 and dn > 0 then
    local inst = dn / dt
    if self.rate == nil or self.smoothing <= 0 then
      self.rate = self.smoothing <= 0 and self.n / (now - self.start) or inst
    else
      self.rate = self.smoothing * inst + (1 - self.smoothing) * self.rate
    end
    self._last_t, self._last_n = now, self.n
  end
end

-- the text of the bar; cols = the width available (nil: no bar graphic)
function Bar:format(cols)
  local now = self.clock()
  local elapsed = now - self.start
  local prefix = self.desc and (self.desc .. ': ') or ''
  local rate = self.rate or (elapsed > 0 and self.n > 0 and self.n / elapsed) or nil
  local post = self.postfix and (', ' .. self.postfix) or ''
  if not self.total then
    return string.format('%s%d%s [%s, %s%s]', prefix, self.n, self.unit, fmt_time(elapsed), fmt_rate(rate, self.unit), post)
  end
  local total = self.total
  local frac = total > 0 and self.n / total or 1
  local eta = rate and rate > 0 and (total - self.n) / rate or nil
  if self.n >= total then eta = 0 end
  local pct = string.format('%3d%%', math.floor(frac * 100))
  local right = string.format(' %d/%d [%s<%s, %s%s]', self.n, total, fmt_time(elapsed), fmt_time(eta),
    fmt_rate(rate, self.unit), post)
  if not cols then return prefix .. pct .. right end
  local room = cols - width(prefix) - #pct - width(right) - 2
  if room < 4 then return prefix .. pct .. right end
  return prefix .. pct .. '|' .. bar_graphic(frac, math.min(room, 100), self.ascii) .. '|' .. right
end

function Bar:_line()
  local cols = self.ncols or term.width(self.file)
  local line = self:format(cols - 1)
  if width(line) > cols - 1 then line = line:sub(1, cols - 1) end -- a wrapped line cannot be redrawn
  return line
end

function Bar:_draw(line)
  line = line or self:_line()
  self.file:write('\r', line, '\27[K')
  if self.file.flush then self.file:flush() end
  self._drawn = line
end

function Bar:_log()
  self.file:write(self:format(nil), '\n')
  if self.file.flush then self.file:flush() end
  self._printed_n = self.n
end

-- redraw now (terminal) or write a line now (log)
function Bar:refresh()
  if self.disable then return self end
  if self.tty then self:_draw() else self:_log() end
  return self
end

function Bar:update(n)
  n = n or 1
  self.n = self.n + n
  if self.disable or self.closed then return self end
  local now = self.clock()
  if self.tty then
    if now - self._last_t >= self.mininterval or (self.total and self.n >= self.total) then
      self:_measure(now)
      self:_draw()
    end
  else
    local bucket = self.total and self.total > 0 and self.log_percent > 0 and
      math.floor(self.n / self.total * 100 / self.log_percent) or 0
    self:_measure(now)
    if bucket > self._printed_bucket or now - (self._log_t or self.start) >= self.log_every then
      self._printed_bucket = bucket
      self._log_t = now
      self:_log()
    end
  end
  return self
end

-- postfix values shown after the rate, e.g. the running loss: a table (keys sorted) or a string
function Bar:set_postfix(values, refresh)
  if type(values) == 'table' then
    local keys = {}
    for k in pairs(values) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = tostring(k) .. '=' .. fmt_num(values[k]) end
    self.postfix = table.concat(parts, ', ')
  else
    self.postfix = values ~= nil and tostring(values) or nil
  end
  if refresh ~= false and self.tty and not self.disable and not self.closed then
    local now = self.clock()
    if now - (self._post_t or 0) >= self.mininterval then
      self._post_t = now
      self:_draw()
    end
  end
  return self
end

function Bar:set_description(desc)
  self.desc = desc
  return self
end

-- print a message without breaking the bar (tqdm.write)
function Bar:write(msg)
  if self.tty and not self.disable and not self.closed then
    self.file:write('\r\27[K', tostring(msg), '\n')
    self:_draw()
  else
    self.file:write(tostring(msg), '\n')
  end
  return self
end

function Bar:close()
  if self.closed then return self end
  self.closed = true
  if self.disable then return self end
  self:_measure(self.clock())
  if self.tty then
    if self.leave then
      local line = self:_line()
      if line ~= self._drawn then self:_draw(line) end
      self.file:write('\n')
    else
      self.file:write('\r\27[K')
    end
  elseif self._printed_n ~= self.n then
    self:_log()
  end
  if self.file.flush then self.file:flush() end
  return self
end

-- the generic for calls the bar: count the finished step, fetch the next item
local function finish(self, a, ...)
  if a == nil then
    self:close()
    return nil
  end
  return a, ...
end
Bar.__call = function(self)
  if not self._next then raise('progress: this bar has no iterable; use bar:update(n)') end
  if self._started then self:update(1) else self._started = true end
  return finish(self, self._next())
end

Bar.__tostring = function(self) return self:format(nil) end

-- progress(iterable, opts), or progress(f, s, c, opts) for an iterator triple such as pairs(t)
-- (three or more arguments with a function first mean a triple)
local function progress(iterable, ...)
  if type(iterable) == 'function' and select('#', ...) >= 2 then
    local s, c, opts = ...
    return Bar.new(iterable, opts, s, c)
  end
  return Bar.new(iterable, (...))
end

return setmetatable({ Bar = Bar, progress = progress, format_time = fmt_time },
  { __call = function(_, ...) return progress(...) end })
