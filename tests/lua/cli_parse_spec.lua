-- cli_parse_spec.lua: ddpm.cli.parse: types, defaults, forms of values, flags, lists, choices,
-- ranges, positionals, --help, and the usage errors (exit objects with status 2).
local cli = require 'ddpm.cli'

local SPEC = {
  description = 'Train the model.',
  options = {
    { '--epochs', type = 'integer', default = 32, help = 'passes over the data' },
    { '--lr', type = 'number', default = 1e-4, help = 'learning rate' },
    { '-b', '--batch-size', type = 'integer', default = 128, min = 1, max = 4096 },
    { '--device', choices = { 'cpu', 'cuda' }, default = 'cpu', help = 'where to run' },
    { '--betas', type = 'numbers', default = { 0.9, 0.999 } },
    { '--ema', type = 'boolean', help = 'keep an EMA copy' },
    { '--amp', type = 'boolean', default = true },
    { '--out', help = 'output directory' },
    { '--size', type = 'integer', choices = { 16, 32 }, default = 16 },
  },
}

local function argv(...)
  local a = { [0] = 'train.lua', ... }
  return a
end

-- the exit object raised by a usage error
local function usage_error(spec, ...)
  local ok, e = pcall(cli.parse, argv(...), spec or SPEC)
  assert.is_false(ok, 'expected a usage error')
  assert.is_true(cli.is_exit(e), 'expected an exit object, got ' .. tostring(e))
  return e
end

describe('ddpm.cli.parse', function()
  it('fills defaults', function()
    local a = cli.parse(argv(), SPEC)
    assert.are.equal(32, a.epochs)
    assert.are.equal(1e-4, a.lr)
    assert.are.equal(128, a.batch_size)
    assert.are.equal('cpu', a.device)
    assert.are.same({ 0.9, 0.999 }, a.betas)
    assert.is_false(a.ema)
    assert.is_true(a.amp)
    assert.is_nil(a.out)
    assert.are.equal(16, a.size)
  end)

  it('does not share a list default between parses', function()
    local a = cli.parse(argv(), SPEC)
    a.betas[1] = 0
    assert.are.same({ 0.9, 0.999 }, cli.parse(argv(), SPEC).betas)
  end)

  it('converts values given as separate words or with =', function()
    local a = cli.parse(argv('--epochs', '3', '--lr=2.5e-3', '-b', '64', '--device=cuda', '--out', 'runs/x', '--size', '32'), SPEC)
    assert.are.equal(3, a.epochs)
    assert.are.equal(2.5e-3, a.lr)
    assert.are.equal(64, a.batch_size)
    assert.are.equal('cuda', a.device)
    assert.are.equal('runs/x', a.out)
    assert.are.equal(32, a.size)
    assert.are.equal(5, cli.parse(argv('--batch-size=5'), SPEC).batch_size)
  end)

  it('takes negative numbers as values', function()
    assert.are.equal(-0.5, cli.parse(argv('--lr', '-0.5'), SPEC).lr)
    assert.are.same({ -1, 2 }, cli.parse(argv('--betas', '-1', '2'), SPEC).betas)
  end)

  it('lets the last occurrence win', function()
    assert.are.equal(2, cli.parse(argv('--epochs', '1', '--epochs', '2'), SPEC).epochs)
  end)

  it('handles boolean flags, --no- forms and explicit values', function()
    assert.is_true(cli.parse(argv('--ema'), SPEC).ema)
    assert.is_false(cli.parse(argv('--no-amp'), SPEC).amp)
    assert.is_false(cli.parse(argv('--ema=false'), SPEC).ema)
    assert.is_true(cli.parse(argv('--ema=yes'), SPEC).ema)
  end)

  it('reads lists as words or comma-separated', function()
    assert.are.same({ 0.5, 0.6 }, cli.parse(argv('--betas', '0.5', '0.6', '--ema'), SPEC).betas)
    assert.are.same({ 0.5, 0.6, 0.7 }, cli.parse(argv('--betas', '0.5,0.6', '0.7'), SPEC).betas)
    assert.are.same({ 1, 2 }, cli.parse(argv('--betas=1,2'), SPEC).betas)
    local s = cli.parse(argv('--names', 'a', 'b,c'), { options = { { '--names', type = 'strings' } } })
    assert.are.same({ 'a', 'b', 'c' }, s.names)
  end)

  it('assigns positionals in order and stops options at --', function()
    local spec = { options = { { 'input' }, { 'count', type = 'integer', default = 1 }, { '--v', type = 'boolean' } } }
    local a = cli.parse(argv('in.npy', '--v', '4'), spec)
    assert.are.equal('in.npy', a.input)
    assert.are.equal(4, a.count)
    assert.is_true(a.v)
    a = cli.parse(argv('--', '--v'), spec)
    assert.are.equal('--v', a.input)
    assert.is_false(a.v)
    local e = usage_error(spec)
    assert.matches('error: the following arguments are required: input', e.message)
    e = usage_error(spec, 'a', '2', 'extra')
    assert.matches('error: unrecognized arguments: extra', e.message)
  end)

  it('reports required options', function()
    local e = usage_error({ options = { { '--seed', type = 'integer', required = true } } })
    assert.are.equal(2, e.exit_code)
    assert.matches('error: the following arguments are required: %-%-seed SEED', e.message)
  end)

  it('names an unknown option and suggests the close one', function()
    local e = usage_error(nil, '--epoch', '3')
    assert.are.equal(2, e.exit_code)
    assert.matches("^usage: train%.lua %[%-h%] %[%-%-epochs EPOCHS%]", e.message)
    assert.matches("\ntrain%.lua: error: unrecognized option '%-%-epoch' %(did you mean %-%-epochs%?%)$", e.message)
    assert.matches("unrecognized option '%-%-zzz'$", usage_error(nil, '--zzz').message)
    assert.are.equal(tostring(e), e.message)
  end)

  it('names the option and the expected form of a bad value', function()
    assert.matches("error: argument %-%-epochs: expected an integer, got '1%.5'$", usage_error(nil, '--epochs', '1.5').message)
    assert.matches("error: argument %-%-lr: expected a number, got 'fast'$", usage_error(nil, '--lr=fast').message)
    assert.matches("error: argument %-%-epochs: expected a value %(an integer%)$", usage_error(nil, '--epochs').message)
    assert.matches("error: argument %-%-epochs: expected a value %(an integer%)$", usage_error(nil, '--epochs', '--ema').message)
    assert.matches("error: argument %-%-betas: expected a number, got 'x'$", usage_error(nil, '--betas', 'x').message)
    assert.matches("error: argument %-%-ema: expected true or false, got 'maybe'$", usage_error(nil, '--ema=maybe').message)
    assert.matches("error: argument %-%-no%-ema: takes no value$", usage_error(nil, '--no-ema=1').message)
  end)

  it('refuses values outside the choices or the range', function()
    assert.matches("error: argument %-%-device: invalid choice 'tpu' %(expected one of cpu, cuda%)$",
      usage_error(nil, '--device', 'tpu').message)
    assert.matches("error: argument %-%-size: invalid choice '24' %(expected one of 16, 32%)$",
      usage_error(nil, '--size', '24').message)
    assert.matches('error: argument %-%-batch%-size: 0 is below the minimum 1$', usage_error(nil, '-b', '0').message)
    assert.matches('error: argument %-%-batch%-size: 5000 is above the maximum 4096$', usage_error(nil, '-b', '5000').message)
  end)

  it('answers --help with every option, its type and default, and status 0', function()
    local e = usage_error(nil, '--help')
    assert.are.equal(0, e.exit_code)
    local h = e.message
    assert.matches('^usage: train%.lua ', h)
    assert.matches('\nTrain the model%.\n', h)
    assert.matches('\n  %-h, %-%-help +show this help message and exit\n', h)
    assert.matches('\n  %-%-epochs EPOCHS +passes over the data %(integer, default: 32%)\n', h)
    assert.matches('\n  %-%-lr LR +learning rate %(number, default: 0%.0001%)\n', h)
    assert.matches('\n  %-b BATCH_SIZE, %-%-batch%-size BATCH_SIZE\n +%(integer, >= 1, <= 4096, default: 128%)\n', h)
    assert.matches('\n  %-%-device {cpu,cuda} +where to run %(default: cpu%)\n', h)
    assert.matches('\n  %-%-betas BETAS %[BETAS %.%.%.%]\n +%(numbers, default: 0%.9 0%.999%)\n', h)
    assert.matches('\n  %-%-ema, %-%-no%-ema +keep an EMA copy %(flag, default: false%)\n', h)
    assert.matches('\n  %-%-out OUT +output directory %(string, default: none%)\n', h)
    assert.are.equal(h, usage_error(nil, '-h').message)
    assert.are.equal(h, cli.help(argv(), SPEC))
  end)

  it('refuses to read an option nobody declared', function()
    local a = cli.parse(argv(), SPEC)
    local ok, err = pcall(function() return a.epoch end)
    assert.is_false(ok)
    assert.matches("no option stores into 'epoch' %(declared: .*epochs", err)
    assert.is_nil(a.out) -- declared, no default: nil without complaint
  end)

  it('raises ordinary errors for mistakes in the spec', function()
    local ok, err = pcall(cli.parse, argv(), { options = { { '--x', type = 'decimal' } } })
    assert.is_false(ok)
    assert.is_false(cli.is_exit(err))
    assert.matches("cli_parse_spec%.lua:%d+: ddpm%.cli%.parse: option %-%-x: unknown type 'decimal'", err)
    ok, err = pcall(cli.parse, argv(), { options = { { '--x' }, { '--x' } } })
    assert.matches('declared twice', err)
    ok, err = pcall(cli.parse, argv(), 'nope')
    assert.matches('expected a spec table', err)
  end)

  it('accepts the Python type names', function()
    local a = cli.parse(argv('--n', '3', '--f', '0.5', '--s', 'x'), { options = {
      { '--n', type = 'int' }, { '--f', type = 'float' }, { '--s', type = 'str' } } })
    assert.are.equal(3, a.n)
    assert.are.equal(0.5, a.f)
    assert.are.equal('x', a.s)
  end)

  it('reads the global arg when no argv is given', function()
    local saved = rawget(_G, 'arg')
    finally(function() rawset(_G, 'arg', saved) end)
    rawset(_G, 'arg', argv('--epochs', '7'))
    assert.are.equal(7, cli.parse(nil, SPEC).epochs)
    assert.are.equal(7, cli.parse(SPEC).epochs)
  end)
end)
