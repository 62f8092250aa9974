-- progress_bar_spec.lua: ddpm.utils.progress: what it iterates, what it prints on a terminal
-- (throttled in-place redraws) and in a log (periodic plain lines), with a fake clock and file.
local progress = require 'ddpm.utils.progress'
local term = require 'ddpm.utils.term'

-- a file that records writes, and a clock the test moves
local function fake()
  local f = { chunks = {} }
  function f:write(...)
    for _, s in ipairs({ ... }) do self.chunks[#self.chunks + 1] = s end
    return self
  end
  function f:flush() end
  function f:text() return table.concat(self.chunks) end
  local clock = { t = 100 }
  function clock.now() return clock.t end
  return f, clock
end

local function lines(s)
  local out = {}
  for l in s:gmatch('[^\n]+') do out[#out + 1] = l end
  return out
end

describe('ddpm.utils.progress iteration', function()
  local f
  before_each(function() f = fake() end)

  it('counts 1..n and closes at the end', function()
    local got = {}
    local bar = progress(5, { file = f, tty = false })
    for i in bar do got[#got + 1] = i end
    assert.are.same({ 1, 2, 3, 4, 5 }, got)
    assert.are.equal(5, bar.n)
    assert.are.equal(5, bar.total)
    assert.is_true(bar.closed)
  end)

  it('walks an array as ipairs does', function()
    local got = {}
    for i, v in progress({ 'a', 'b', 'c' }, { file = f, tty = false }) do got[#got + 1] = i .. v end
    assert.are.same({ '1a', '2b', '3c' }, got)
  end)

  it('passes an iterator triple through, and a closure', function()
    local got = {}
    local stdout = io.stdout
    io.stdout = f -- the default output, captured
    finally(function() io.stdout = stdout end)
    for k, v in progress(pairs({ x = 1, y = 2 })) do got[k] = v end
    io.stdout = stdout
    assert.are.same({ x = 1, y = 2 }, got)
    assert.matches('2it %[', f:text())
    got = {}
    -- with options, the triple is spelled out (a call in the middle of a list gives one value)
    local fn, s, c = ipairs({ 7, 8 })
    for i, v in progress(fn, s, c, { file = f, tty = false, total = 2 }) do got[i] = v end
    assert.are.same({ 7, 8 }, got)
    local n = 0
    local bar = progress(function()
      n = n + 1
      if n <= 3 then return n * 10 end
    end, { file = f, tty = false })
    got = {}
    for v in bar do got[#got + 1] = v end
    assert.are.same({ 10, 20, 30 }, got)
    assert.are.equal(3, bar.n)
    assert.is_nil(bar.total)
  end)

  it('uses :iter() and :len() of an object', function()
    local Loader = {}
    Loader.__index = Loader
    function Loader:len() return #self.items end
    function Loader:iter() return ipairs(self.items) end
    local loader = setmetatable({ items = { 'p', 'q' } }, Loader)
    local bar = progress(loader, { file = f, tty = false })
    assert.are.equal(2, bar.total)
    local got = {}
    for _, v in bar do got[#got + 1] = v end
    assert.are.same({ 'p', 'q' }, got)
  end)

  it('counts a step when the next item is asked for, as tqdm', function()
    local bar = progress(3, { file = f, tty = false })
    local seen = {}
    for _ in bar do seen[#seen + 1] = bar.n end
    assert.are.same({ 0, 1, 2 }, seen)
    assert.are.equal(3, bar.n)
  end)

  it('refuses what it cannot iterate', function()
    local ok, err = pcall(progress, true)
    assert.is_false(ok)
    assert.matches('progress: cannot iterate over a boolean', err)
  end)

  it('does nothing visible when disabled', function()
    for _ in progress(3, { file = f, disable = true }) do end
    assert.are.equal('', f:text())
  end)
end)

describe('ddpm.utils.progress in a log (not a terminal)', function()
  it('writes a line every 10% with count, rate, elapsed, ETA and postfix', function()
    local f, clock = fake()
    local bar = progress(nil, { total = 100, desc = 'train', file = f, tty = false, clock = clock.now, smoothing = 0 })
    for i = 1, 100 do
      clock.t = clock.t + 0.5
      bar:set_postfix({ loss = 1 / i })
      bar:update(1)
    end
    bar:close()
    local l = lines(f:text())
    assert.are.equal(10, #l)
    assert.are.equal('train:  10% 10/100 [00:05<00:45, 2.00it/s, loss=0.1]', l[1])
    assert.are.equal('train:  50% 50/100 [00:25<00:25, 2.00it/s, loss=0.02]', l[5])
    assert.are.equal('train: 100% 100/100 [00:50<00:00, 2.00it/s, loss=0.01]', l[10])
  end)

  it('writes every log_every seconds when the total is unknown, and a last line on close', function()
    local f, clock = fake()
    local bar = progress(nil, { unit = 'img', file = f, tty = false, clock = clock.now, log_every = 10, smoothing = 0 })
    for _ = 1, 25 do
      clock.t = clock.t + 1
      bar:update(4)
    end
    bar:close()
    assert.are.same({ '40img [00:10, 4.00img/s]', '80img [00:20, 4.00img/s]', '100img [00:25, 4.00img/s]' },
      lines(f:text()))
  end)

  it('shows slow rates as seconds per step', function()
    local f, clock = fake()
    local bar = progress(nil, { total = 2, file = f, tty = false, clock = clock.now, unit = 'step', smoothing = 0 })
    clock.t = clock.t + 150
    bar:update()
    assert.are.equal(' 50% 1/2 [02:30<02:30, 150.00s/step]\n', f:text())
  end)

  it('formats postfix values and tensors', function()
    local ddpm = require 'ddpm'
    local f = fake()
    local bar = progress(nil, { file = f, tty = false })
    bar:set_postfix({ loss = ddpm.tensor(0.123456), step = 12, tag = 'x' })
    assert.are.equal('loss=0.1235, step=12, tag=x', bar.postfix)
    bar:set_postfix('custom')
    assert.are.equal('custom', bar.postfix)
  end)

  it('formats times like tqdm', function()
    assert.are.equal('00:07', progress.format_time(7.2))
    assert.are.equal('02:05', progress.format_time(125))
    assert.are.equal('1:02:05', progress.format_time(3725))
    assert.are.equal('?', progress.format_time(nil))
  end)
end)

describe('ddpm.utils.progress on a terminal', function()
  it('redraws in place, at most every mininterval, and ends the line on close', function()
    local f, clock = fake()
    local bar = progress(nil, { total = 1000, desc = 'ep 1', file = f, tty = true, clock = clock.now, ncols = 80,
      ascii = true })
    for _ = 1, 1000 do
      clock.t = clock.t + 0.001 -- 1 s in all: about 10 redraws
      bar:update(1)
    end
    bar:close()
    local text = f:text()
    local _, draws = text:gsub('\r', '')
    assert.is_true(draws >= 10 and draws <= 13, 'redraws: ' .. draws)
    assert.is_falsy(text:sub(1, -2):find('\n'), 'only the final newline')
    assert.are.equal('\n', text:sub(-1))
    local last = text:match('\r([^\r]*)\27%[K\n$')
    assert.is_truthy(last)
    assert.are.equal(79, #last)
    assert.matches('^ep 1: 100%%|#+| 1000/1000 %[00:01<00:00, [%d.]+it/s%]$', last)
  end)

  it('draws a partial unicode bar and fits the width', function()
    local f, clock = fake()
    local bar = progress(nil, { total = 16, file = f, tty = true, clock = clock.now, ncols = 60, ascii = false })
    clock.t = clock.t + 1
    bar:update(3)
    local last = f:text():match('\r([^\r]*)\27%[K$')
    assert.are.equal(' 18%|████▌ ', last:sub(1, #' 18%|████▌ '))
    assert.matches('| 3/16 %[00:01<00:04, 3%.00it/s%]$', last)
    local _, cont = last:gsub('[\128-\191]', '')
    assert.are.equal(59, #last - cont)
  end)

  it('writes messages above the bar', function()
    local f, clock = fake()
    local bar = progress(nil, { total = 10, file = f, tty = true, clock = clock.now, ncols = 60 })
    bar:write('hello')
    assert.matches('\r\27%[Khello\n\r[^\n]*0/10', f:text())
  end)

  it('clears the line on close with leave = false', function()
    local f, clock = fake()
    local bar = progress(nil, { total = 2, file = f, tty = true, clock = clock.now, ncols = 60, leave = false })
    bar:update(2)
    bar:close()
    assert.matches('\r\27%[K$', f:text())
    assert.is_falsy(f:text():find('\n'))
  end)
end)

describe('ddpm.utils.term', function()
  it('tells terminals apart and reads a monotonic clock', function()
    assert.is_boolean(term.isatty(io.stdout))
    assert.is_false(term.isatty({}))
    local a = term.now()
    local b = term.now()
    assert.is_true(b >= a)
    assert.is_true(term.width({}) >= 1)
  end)
end)
