-- repl_spec.lua: drives `ddpm-lua` with no script through a pipe: expressions print their
-- value, a function definition spans several lines, an error is reported and the next line
-- still works, and the session ends with status 0 at end of input.
local exe = os.getenv('DDPM_LUA')

-- run the REPL on the given input lines; returns its output and exit status
local function repl(lines)
  local inp = os.tmpname()
  local f = assert(io.open(inp, 'w'))
  f:write(table.concat(lines, '\n'), '\n')
  f:close()
  local p = assert(io.popen(string.format('%q < %q 2>&1; echo "exit=$?"', exe, inp)))
  local out = p:read('*a')
  p:close()
  os.remove(inp)
  local status = tonumber(out:match('exit=(%d+)%s*$'))
  return out:gsub('exit=%d+%s*$', ''), status
end

describe('the REPL', function()
  if not exe then
    pending('DDPM_LUA is not set (ctest sets it to build/ddpm-lua)')
    return
  end

  it('auto-prints expressions, keeps multi-line input, survives errors, exits 0', function()
    local out, status = repl({
      '1 + 2',
      'ddpm.ones(2) * 3',
      'function sq(x)',
      '  return x * x',
      'end',
      'sq(7)',
      'ddpm.zeros(2) + ddpm.zeros(3)',
      'error("custom failure")',
      'local t = ddpm.arange(4)',
      '=sq(5)',
      'x = 10',
      'x, x + 1',
      'for i = 1, 2 do',
      '  io.write("loop ", i, "\\n")',
      'end',
      'nil',
    })
    assert.are.equal(0, status)
    local lines = {}
    for l in out:gmatch('[^\n]+') do lines[#lines + 1] = l end
    assert.are.equal('3', lines[1])
    assert.are.equal('tensor([3., 3.])', lines[2])
    assert.are.equal('49', lines[3])
    assert.matches('add: shapes %[2%] and %[3%] do not broadcast', lines[4])
    assert.matches('custom failure', out)
    assert.matches('\n25\n', out)
    assert.matches('\n10\t11\n', out)
    assert.matches('loop 1\nloop 2\n', out)
    -- no prompts on a pipe
    assert.is_nil(out:match('^> '))
  end)

  it('reports a syntax error and continues', function()
    local out, status = repl({ 'local = 5', '6 * 7' })
    assert.are.equal(0, status)
    assert.matches("stdin:1: '<name>' expected near '='", out)
    assert.matches('\n42\n', out)
  end)

  it('ends quietly on empty input', function()
    local out, status = repl({})
    assert.are.equal(0, status)
    assert.are.equal('', out:gsub('%s', ''))
  end)
end)
