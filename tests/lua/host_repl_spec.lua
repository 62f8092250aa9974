-- host_repl_spec.lua: the ddpm-lua REPL through a pipe and through a pseudo-terminal (util-linux
-- `script`): auto-print, multi-line input, recovery after errors, short tracebacks, history,
-- Ctrl-C; and the REPL's pieces (compile, printing, completion) in-process.
local H = require 'host_run'
local repl = require 'ddpm.repl'
local ddpm = require 'ddpm'

local function repl_pipe(input, env)
  return H.run('', { stdin = input, env = env or { DDPM_HISTORY = '' } })
end

describe('REPL through a pipe', function()
  it('prints expression results, tab-separated, tensors pretty', function()
    local r = repl_pipe('=1 + 1\n1, "a", nil\nddpm.ones(2, 2)\nddpm.ones(2, 3):shape()\n{x = 1, "s"}\nprint("hi")\n')
    assert.are.equal(0, r.status, r.stderr)
    assert.are.equal('', r.stderr)
    assert.are.equal('2\n1\ta\tnil\ntensor([[1., 1.],\n        [1., 1.]])\n{2, 3}\n{"s", x = 1}\nhi\n', r.stdout)
  end)

  it('keeps reading an unfinished chunk, and keeps top-level locals', function()
    local r = repl_pipe('function sq(x)\n  return x * x\nend\n=sq(7)\nlocal k = 5\n=k\nt = {\n1,\n2}\n=#t\n')
    assert.are.equal(0, r.status, r.stderr)
    assert.are.equal('49\n5\n2\n', r.stdout)
  end)

  it('shows errors and carries on', function()
    local r = repl_pipe('error("boom")\n=1 +\n)\nddpm.zeros(2) + ddpm.zeros(3)\n=40 + 2\n')
    assert.are.equal(0, r.status)
    assert.are.equal('42\n', r.stdout)
    local lines = {}
    for l in r.stderr:gmatch('[^\n]+') do lines[#lines + 1] = l end
    assert.are.equal('stdin:1: boom', lines[1])
    assert.matches("^stdin:2: unexpected symbol near '%)'", lines[2])
    assert.matches('^stdin:1: add: shapes %[2%] and %[3%] do not broadcast', lines[3])
    assert.are.equal(3, #lines)
  end)

  it('shows a short traceback of the user frames only', function()
    local r = repl_pipe('function f(x)\n  return ddpm.zeros(2) + x\nend\nfunction g() local r = f(ddpm.zeros(3)); return r end\ng()\n')
    assert.are.equal(0, r.status)
    assert.are.equal(
      "stdin:2: add: shapes [2] and [3] do not broadcast (dim -1: 2 vs 3; sizes must match or be 1)", r.stderr:match('^[^\n]*'):gsub(' %(at [^)]*%)$', ''))
    assert.matches("\nstack traceback:\n\tstdin:2: in function 'f'\n\tstdin:1: in function 'g'\n\tstdin:1: in main chunk\n$", r.stderr)
    assert.is_falsy(r.stderr:find('repl.lua', 1, true))
    assert.is_falsy(r.stderr:find('[C]', 1, true))
  end)

  it('stops at exit or quit', function()
    local r = repl_pipe('=1\nexit\n=2\n')
    assert.are.equal('1\n', r.stdout)
    r = repl_pipe('quit()\n=2\n')
    assert.are.equal('', r.stdout)
  end)

  it('prints usage errors raised by ddpm.cli without leaving', function()
    local r = repl_pipe("ddpm.cli.parse({'--bad'}, {options = {}})\n=1\n")
    assert.are.equal('1\n', r.stdout)
    assert.matches("error: unrecognized option '%-%-bad'", r.stderr)
    assert.is_falsy(r.stderr:find('traceback', 1, true))
  end)
end)

-- ---- through a pseudo-terminal ---------------------------------------------------------------------------
-- A shell feeds keystrokes to `script`, which runs ddpm-lua on a pty; `wait_for` polls the
-- captured screen so that Ctrl-C is sent only once the REPL is where the test wants it.  Input
-- goes in one write, or once the REPL waits at its prompt: keys arriving while it evaluates would
-- be echoed by the terminal itself, in between the lines the assertions look for.
local have_script = H.have('script')

-- `exec`: script runs the command through $SHELL or /bin/sh; dash would stay in between as the
-- parent, catch the Ctrl-C too and exit 130 (CI's environment has no SHELL).
local function pty_session(feed, hist)
  local dir = H.tmpdir()
  local sh = string.format([[
out=%s/screen
wait_for() { i=0; until grep -q "$1" "$out" 2>/dev/null || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done; sleep 0.2; }
feed() {
%s
}
feed | TERM=dumb DDPM_HISTORY=%s HOME=%s script -qec %s /dev/null >"$out" 2>&1
echo "status $?"
cat "$out"
]], dir, feed, H.q(hist or (dir .. '/history')), H.q(dir), H.q('exec ' .. H.q(H.exe)))
  local r = H.sh(sh)
  local history = H.read(hist or (dir .. '/history'))
  H.rmdir(dir)
  -- the terminal writes CR LF; readline redraws with CRs
  return r.stdout:gsub('\r\n', '\n'):gsub('\r', ''), history
end

describe('REPL on a terminal', function()
  if not have_script then
    it('needs util-linux script', function() pending('needs util-linux `script` (bsdutils) to run a pty') end)
    return
  end

  it('edits lines, prompts for continuations, auto-prints and writes the history file', function()
    local screen, history = pty_session([[
wait_for 'Ctrl-D exits'
printf 'x = 21\nfunction twice(v)\nreturn 2 * v\nend\n=twice(x)\nerror("oops")\nddpm.ones(2)\n'
wait_for 'tensor(\[1'
]])
    assert.matches('^status 0\n', screen)
    assert.is_truthy(screen:find('ddpm%-lua %d+%.%d+%.%d+ %(LuaJIT'))
    assert.is_truthy(screen:find('\n> function twice%(v%)\n>> return 2 %* v\n>> end\n'))
    assert.is_truthy(screen:find('\n> =twice%(x%)\n42\n'))
    assert.is_truthy(screen:find('\nstdin:1: oops\n'))
    assert.is_truthy(screen:find('\ntensor%(%[1%., 1%.%]%)\n'))
    assert.is_truthy(history, 'no history file written')
    assert.is_truthy(history:find('x = 21\n', 1, true))
    assert.is_truthy(history:find('=twice(x)\n', 1, true))
    assert.is_truthy(history:find('return 2 * v', 1, true))
  end)

  it('interrupts a running computation with Ctrl-C and returns to the prompt', function()
    local screen = pty_session([[
wait_for 'Ctrl-D exits'
printf 'n = 0\nprint("loop" .. "ing"); while true do n = n + ddpm.ones(2):sum():item() end\n'
wait_for '^looping'
sleep 0.3
printf '\003'
wait_for 'interrupted!'
printf '=n > 0\n'
wait_for '^true'
printf 'unfinished('
sleep 0.3
printf '\003'
sleep 0.3
printf '=6 * 7\n'
wait_for '^42'
]])
    assert.matches('^status 0\n', screen)
    assert.is_truthy(screen:find('stdin:1: interrupted!\n> =n > 0\ntrue\n'))
    -- Ctrl-C at the prompt drops the unfinished line
    assert.is_truthy(screen:find('> unfinished%(%^C\n> =6 %* 7\n42\n'))
  end)

  it('completes names with Tab', function()
    local screen = pty_session([[
wait_for 'Ctrl-D exits'
printf 'ddpm.zeros_l\t(ddpm.ones(1)) + 1\n'
wait_for 'tensor(\['
]])
    assert.is_truthy(screen:find('\ntensor%(%[1%.%]%)\n'))
  end)
end)

-- ---- the pieces, in-process --------------------------------------------------------------------------------
describe('ddpm.repl pieces', function()
  it('compiles expressions and statements, flags unfinished chunks', function()
    local f, _, is_expr = repl.compile('1 + 1')
    assert.is_true(is_expr)
    assert.are.same({ 1, 2 }, { f() })
    local _, _, is_expr2 = repl.compile('x_repl_spec = 1')
    assert.is_false(is_expr2)
    local g, err, _, incomplete = repl.compile('for i = 1, 2 do')
    assert.is_nil(g)
    assert.is_true(incomplete)
    assert.matches("'end' expected", err)
    local _, _, _, incomplete2 = repl.compile('x = = 1')
    assert.is_false(incomplete2)
  end)

  it('turns a top-level local into a global', function()
    assert.are.equal('x = 1', repl.globalize('local x = 1'))
    assert.are.equal('a, b = 1, 2', repl.globalize('local a, b = 1, 2'))
    assert.are.equal('function f() end', repl.globalize('local function f() end'))
    assert.are.equal('local x', repl.globalize('local x'))
    assert.are.equal('y = 1 local z = 2', repl.globalize('y = 1 local z = 2'))
  end)

  it('formats values', function()
    local res = { true, 'a', 1.5, nil, { 1, { 2 }, k = 'v' } }
    assert.are.equal('a\t1.5\tnil\t{1, {2}, k = "v"}', repl.format_values(res, 2, 5))
    assert.are.equal('tensor([1., 2.])', repl.format_values({ ddpm.tensor({ 1, 2 }) }, 1, 1))
    assert.are.equal('{<tensor 2x2 ddpm.float32>}', repl.format_values({ { ddpm.ones(2, 2) } }, 1, 1))
  end)

  it('completes globals, fields and tensor methods', function()
    local had = rawget(_G, 'ddpm')
    rawset(_G, 'ddpm', ddpm)
    finally(function() rawset(_G, 'ddpm', had) end)
    assert.are.same({ 'ddpm.zeros', 'ddpm.zeros_like' }, repl.complete('ddpm.zero'))
    rawset(_G, 'repl_spec_t', ddpm.ones(1))
    local m = repl.complete('repl_spec_t:su')
    assert.is_truthy(#m >= 2)
    for _, s in ipairs(m) do assert.matches('^repl_spec_t:su', s) end
    rawset(_G, 'repl_spec_t', nil)
    local w = repl.complete('whil')
    assert.are.same({ 'while' }, w)
    assert.are.same({}, repl.complete('no_such_global_xyz.a'))
  end)

  it('evaluates a chunk into given streams', function()
    local out, err = {}, {}
    local o = { write = function(_, ...) for _, s in ipairs({ ... }) do out[#out + 1] = s end end }
    local e = { write = function(_, ...) for _, s in ipairs({ ... }) do err[#err + 1] = s end end }
    assert.is_true(repl.eval('=3 * 3', o, e))
    assert.is_false(repl.eval('error("bad")', o, e))
    assert.are.equal('9\n', table.concat(out))
    assert.matches('^stdin:1: bad', table.concat(err))
  end)
end)
