-- host_install_spec.lua: `cmake --install build --prefix P` gives a ddpm-lua that works from any
-- directory (its own Lua package and libddpm, not the source tree's), and a package plain
-- luajit can load; the installed tree still works after being moved.
local H = require 'host_run'
local q = H.q

describe('installed tree', function()
  local build = H.exe:match('^(.*)/[^/]*$')
  if not H.have('cmake') or not build then
    it('needs cmake', function() pending('needs cmake and the build directory of ddpm-lua') end)
    return
  end
  local root, prefix
  setup(function()
    root = H.tmpdir()
    prefix = root .. '/prefix'
    local r = H.sh(string.format('cmake --install %s --prefix %s', q(build), q(prefix)))
    assert.are.equal(0, r.status, r.stdout .. r.stderr)
  end)
  teardown(function() H.rmdir(root) end)

  it('runs -e from another directory with the installed package', function()
    local r = H.sh(q(prefix .. '/bin/ddpm-lua') ..
      [[ -e "print(ddpm.ones(2, 2):sum():item()); print(package.searchpath('ddpm', package.path))"]], { cwd = '/' })
    assert.are.equal(0, r.status, r.stderr)
    local lines = {}
    for l in r.stdout:gmatch('[^\n]+') do lines[#lines + 1] = l end
    assert.are.equal('4', lines[1])
    assert.are.equal(prefix .. '/share/ddpm-lua/lua/ddpm/init.lua', lines[2])
  end)

  it('runs a script with arguments, options and short tracebacks', function()
    H.write(root .. '/job.lua', [[
local args = ddpm.cli.parse(arg, { options = { { '--n', type = 'integer', default = 1 } } })
print('n', args.n, ddpm.arange(args.n):sum():item())
]])
    local r = H.sh(q(prefix .. '/bin/ddpm-lua') .. ' job.lua --n 5', { cwd = root })
    assert.are.equal(0, r.status, r.stderr)
    assert.are.equal('n\t5\t10\n', r.stdout)
    H.write(root .. '/bad.lua', 'local function f() return ddpm.zeros(2) + ddpm.zeros(3), 1 end\nf()\n')
    r = H.sh(q(prefix .. '/bin/ddpm-lua') .. ' bad.lua', { cwd = root })
    assert.are.equal(1, r.status)
    assert.matches('^ddpm%-lua: bad%.lua:1: add: shapes', r.stderr)
    assert.is_falsy(r.stderr:find('share/ddpm-lua', 1, true), 'library frames must be hidden')
  end)

  it('installs the Lua jobs, which run there', function()
    local r = H.sh(q(prefix .. '/bin/ddpm-lua') .. ' ' .. q(prefix .. '/share/ddpm-lua/scripts/demo.lua') .. ' --steps 3',
      { cwd = '/' })
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('\nloss [%d.]+ %-> [%d.]+ after 3 steps\n$', r.stdout)
  end)

  it('lets plain luajit load the installed package', function()
    local lua = prefix .. '/share/ddpm-lua/lua'
    local r = H.sh([[luajit -e "local d = require('ddpm'); print(d.ones(3):sum():item())"]],
      { cwd = '/', env = { LUA_PATH = lua .. '/?.lua;' .. lua .. '/?/init.lua;;' } })
    assert.are.equal(0, r.status, r.stderr)
    assert.are.equal('3\n', r.stdout)
  end)

  it('still works after the prefix moves', function()
    local moved = root .. '/moved'
    assert.are.equal(0, H.sh(string.format('cp -a %s %s', q(prefix), q(moved))).status)
    local r = H.sh(q(moved .. '/bin/ddpm-lua') .. [[ -e "print(package.searchpath('ddpm', package.path))"]], { cwd = '/' })
    assert.are.equal(0, r.status, r.stderr)
    assert.are.equal(moved .. '/share/ddpm-lua/lua/ddpm/init.lua\n', r.stdout)
  end)
end)
