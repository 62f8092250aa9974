-- host_args_spec.lua: the ddpm-lua command line: script arguments, -e, -l, -i, -v, -h, -, --,
-- exit statuses, the error format on stderr, usage errors from ddpm.cli, and Ctrl-C.
local H = require 'host_run'
local q = H.q

describe('ddpm-lua command line', function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rmdir(dir) end)
  local function script(name, src)
    H.write(dir .. '/' .. name, src)
    return name
  end

  it('passes script arguments in arg and ...', function()
    script('args.lua', [[
      print(select('#', ...), ...)
      print(arg[0], arg[1], arg[2], #arg)
      print(arg[-1] ~= nil, arg[-2])
    ]])
    local r = H.run('args.lua one "two words"', { cwd = dir })
    assert.are.equal(0, r.status)
    assert.are.equal('2\tone\ttwo words\nargs.lua\tone\ttwo words\t2\ntrue\tnil\n', r.stdout)
  end)

  it('puts the interpreter and its options at negative indices of arg', function()
    script('neg.lua', 'print(arg[-1], arg[-2], arg[0], arg[1])')
    local r = H.run('-e "x=1" neg.lua a', { cwd = dir })
    assert.are.equal(0, r.status)
    assert.are.equal('x=1\t-e\tneg.lua\ta\n', r.stdout)
  end)

  it('preloads ddpm as a global, the same table require returns', function()
    local r = H.run([[-e "print(require('ddpm') == ddpm, ddpm.ones(2, 3):sum():item())"]])
    assert.are.equal(0, r.status, r.stderr)
    assert.are.equal('true\t6\n', r.stdout)
  end)

  it('runs -e chunks in order, before the script', function()
    script('after.lua', 'print("script", x)')
    local r = H.run([[-e "x = 1" -e "x = x + 1; print('e', x)" after.lua]], { cwd = dir })
    assert.are.equal(0, r.status, r.stderr)
    assert.are.equal('e\t2\nscript\t2\n', r.stdout)
    assert.are.equal('7\n', H.run([[-e"print(3 + 4)"]]).stdout)
  end)

  it('requires -l modules into globals (also -l name=module)', function()
    script('mymod.lua', 'return { answer = 42 }')
    local r = H.run([[-l mymod -l alias=mymod -e "print(mymod.answer, alias.answer)"]], { cwd = dir })
    assert.are.equal(0, r.status, r.stderr)
    assert.are.equal('42\t42\n', r.stdout)
    r = H.run('-l no_such_module_xyz -e "print(1)"', { cwd = dir })
    assert.are.equal(1, r.status)
    assert.matches("module 'no_such_module_xyz' not found", r.stderr)
    assert.are.equal('', r.stdout)
  end)

  it('runs stdin as a script with -, and stops at --', function()
    local r = H.run('- a b', { stdin = 'print(arg[0], ...)' })
    assert.are.equal(0, r.status, r.stderr)
    assert.are.equal('-\ta\tb\n', r.stdout)
    script('-odd.lua', 'print("odd", ...)')
    r = H.run('-- -odd.lua -e -i', { cwd = dir })
    assert.are.equal(0, r.status, r.stderr)
    assert.are.equal('odd\t-e\t-i\n', r.stdout)
  end)

  it('enters the REPL after the script with -i, with its globals', function()
    script('setg.lua', 'g = 6 * 7')
    local r = H.run('-i setg.lua', { cwd = dir, stdin = '=g\n' })
    assert.are.equal(0, r.status, r.stderr)
    assert.are.equal('42\n', r.stdout)
    -- like python -i, also after a failing script, and the failure is still the exit status
    script('fails.lua', 'g = 1\nerror("boom")')
    r = H.run('-i fails.lua', { cwd = dir, stdin = '=g + 1\n' })
    assert.are.equal(1, r.status)
    assert.are.equal('2\n', r.stdout)
    assert.matches('fails.lua:2: boom', r.stderr)
  end)

  it('prints the version with -v and the usage with -h', function()
    local r = H.run('-v')
    assert.are.equal(0, r.status)
    assert.matches('^ddpm%-lua %d+%.%d+%.%d+ %(libddpm [^)]*%), LuaJIT 2%.1', r.stdout)
    r = H.run('-v -e "print(1)"')
    assert.matches('\n1\n$', r.stdout)
    r = H.run('-h')
    assert.are.equal(0, r.status)
    for _, o in ipairs({ '-e code', '-l mod', '-i', '-v', '-h', '--', '-  ' }) do
      assert.is_truthy(r.stdout:find(o, 1, true), 'usage lacks ' .. o)
    end
  end)

  it('rejects unknown options and -e without code with status 1', function()
    local r = H.run('-x')
    assert.are.equal(1, r.status)
    assert.matches("^ddpm%-lua: unrecognized option '%-x'\nusage:", r.stderr)
    r = H.run('-e')
    assert.are.equal(1, r.status)
    assert.matches("^ddpm%-lua: '%-e' needs an argument", r.stderr)
  end)

  it('exits 0 on success, with os.exit status, 1 on errors', function()
    script('ok.lua', 'local x = 1')
    script('exit3.lua', 'os.exit(3)')
    script('syntax.lua', 'local x = = 1')
    assert.are.equal(0, H.run('ok.lua', { cwd = dir }).status)
    assert.are.equal(3, H.run('exit3.lua', { cwd = dir }).status)
    local r = H.run('syntax.lua', { cwd = dir })
    assert.are.equal(1, r.status)
    assert.are.equal("ddpm-lua: syntax.lua:1: unexpected symbol near '='\n", r.stderr)
    r = H.run('missing.lua', { cwd = dir })
    assert.are.equal(1, r.status)
    assert.matches('^ddpm%-lua: cannot open missing%.lua', r.stderr)
  end)

  it('reports a script error as file:line: message, without a one-frame traceback', function()
    script('err.lua', 'local x = 1\nerror("boom")\n')
    local r = H.run('err.lua', { cwd = dir })
    assert.are.equal(1, r.status)
    assert.are.equal('ddpm-lua: err.lua:2: boom\n', r.stderr)
  end)

  it('shows only the user frames of a deeper error', function()
    script('deep.lua', [[
local function inner(t) local r = t + ddpm.zeros(3); return r end
local function outer() local r = inner(ddpm.zeros(2)); return r end
outer()
]])
    local r = H.run('deep.lua', { cwd = dir })
    assert.are.equal(1, r.status)
    local lines = {}
    for l in r.stderr:gmatch('[^\n]+') do lines[#lines + 1] = l end
    assert.matches('^ddpm%-lua: deep%.lua:1: add: shapes %[2%] and %[3%] do not broadcast', lines[1])
    assert.are.equal('stack traceback:', lines[2])
    assert.are.equal("\tdeep.lua:1: in function 'inner'", lines[3])
    assert.are.equal("\tdeep.lua:2: in function 'outer'", lines[4])
    assert.are.equal('\tdeep.lua:3: in main chunk', lines[5])
    assert.are.equal(5, #lines)
    assert.is_falsy(r.stderr:find('[C]', 1, true))
    assert.is_falsy(r.stderr:find('lua/ddpm/', 1, true))
    -- the full traceback stays available for debugging the library
    r = H.run('deep.lua', { cwd = dir, env = { DDPM_TRACEBACK = 'full' } })
    assert.is_truthy(r.stderr:find('ddpm/tensor.lua', 1, true))
  end)

  it('prints error objects through __tostring', function()
    local r = H.run([[-e "error(setmetatable({}, {__tostring = function() return 'custom' end}))"]])
    assert.are.equal(1, r.status)
    assert.are.equal('ddpm-lua: custom\n', r.stderr)
    r = H.run([[-e "error({})"]])
    assert.are.equal('ddpm-lua: (error object is a table value)\n', r.stderr)
  end)

  it('turns ddpm.cli usage errors into status 2 without a traceback, --help into status 0', function()
    script('opts.lua', [[
local args = ddpm.cli.parse(arg, { description = 'Options test.', options = {
  { '--epochs', type = 'integer', default = 32, help = 'passes' } } })
print('epochs', args.epochs)
]])
    local r = H.run('opts.lua --epochs 3', { cwd = dir })
    assert.are.equal(0, r.status, r.stderr)
    assert.are.equal('epochs\t3\n', r.stdout)
    r = H.run('opts.lua --epochs x', { cwd = dir })
    assert.are.equal(2, r.status)
    assert.are.equal('', r.stdout)
    assert.matches("^usage: opts%.lua %[%-h%] %[%-%-epochs EPOCHS%]\nopts%.lua: error: argument %-%-epochs: expected an integer, got 'x'\n$", r.stderr)
    r = H.run('opts.lua --help', { cwd = dir })
    assert.are.equal(0, r.status)
    assert.are.equal('', r.stderr)
    assert.matches('%-%-epochs EPOCHS +passes %(integer, default: 32%)', r.stdout)
  end)

  describe('Ctrl-C', function()
    -- start the script in the background, wait until it says it runs, send SIGINT
    local function interrupt(name)
      return H.sh(string.format([[
%s %s >out 2>err & pid=$!
i=0; until grep -qs started out || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done
sleep 0.2; kill -INT $pid; wait $pid; echo "status $?"; cat out; cat err >&2]], q(H.exe), name), { cwd = dir })
    end
    it('stops a running computation with "interrupted!" and status 130', function()
      script('loop.lua', [[
io.write('started\n'); io.stdout:flush()
local x = ddpm.zeros(4)
while true do x = x + ddpm.ones(4) end
]])
      local r = interrupt('loop.lua')
      assert.matches('^status 130\n', r.stdout)
      assert.matches('^ddpm%-lua: loop%.lua:3: interrupted!', r.stderr)
    end)
    it('raises an error the script can catch', function()
      script('catch.lua', [[
io.write('started\n'); io.stdout:flush()
local ok, err = pcall(function()
  local x = ddpm.zeros(4)
  while true do x = x + ddpm.ones(4) end
end)
print('caught', ok, err)
]])
      local r = interrupt('catch.lua')
      assert.matches('^status 0\nstarted\ncaught\tfalse\tcatch%.lua:4: interrupted!\n$', r.stdout)
    end)
  end)
end)
