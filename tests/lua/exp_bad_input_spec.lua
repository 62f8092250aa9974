-- exp_bad_input_spec.lua: bad swaps and experiment settings stop the scripts before any work, with
-- a clear message and a non-zero status: unknown scheduler names and files, label-net files that
-- do not return a module or return the wrong shape (one forward on a dummy batch), mask
-- probabilities outside [0, 1], negative guidance, --zero-snr with noise prediction.
local h = require 'e2e_helpers'

local dir
setup(function()
  dir = h.tmpdir()
  h.write_data(dir, { n = 24, classes = 5 })
end)
teardown(function() h.rmdir(dir) end)

local function data_words() return { '--data', dir .. '/images.npy', '--labels', dir .. '/labels.npy' } end

-- run `script` with tiny settings plus words; it must fail before training with the pattern on stderr
local function fails(script, words, pattern, status)
  local out = dir .. '/out-' .. tostring(math.random(1e9))
  local r = h.script(script, h.words(data_words(), h.TINY, h.TINY_COND, '--epochs', '1', '--out', out, words))
  if status then assert.are.equal(status, r.status, r.stderr) else assert.are_not.equal(0, r.status, r.stdout) end
  assert.matches(pattern, r.stderr)
  assert.is_falsy(r.stderr:match('stack traceback'), r.stderr)
  assert.is_falsy(r.stdout:match('epoch'), r.stdout)
  assert.is_false(h.exists(out .. '/checkpoint'))
  return r
end

local function lua_file(name, text)
  local p = dir .. '/' .. name
  h.write(p, text)
  return p
end

describe('a bad --scheduler stops training before it starts', function()
  it('an unknown name', function()
    fails('train_conditional.lua', { '--scheduler', 'ddpn' },
      "train_conditional%.lua: error: %-%-scheduler: unknown scheduler 'ddpn'; expected one of ddpm, ddim, dpm, euler_a, or the "
      .. 'path of a %.lua file', 1)
  end)
  it('a missing file', function()
    fails('train_conditional.lua', { '--scheduler', dir .. '/nope.lua' }, "%-%-scheduler: cannot read '.*nope%.lua'")
  end)
  it('a file with a syntax error', function()
    fails('train_conditional.lua', { '--scheduler', lua_file('syntax.lua', 'return function(') }, 'does not compile')
  end)
  it('a file that returns no scheduler', function()
    fails('train_conditional.lua', { '--scheduler', lua_file('num.lua', 'return 42') },
      'expected a scheduler %(a table with config, add_noise, set_timesteps, step%), got a number')
    fails('train_conditional.lua', { '--scheduler', lua_file('nothing.lua', 'local x = 1') }, 'returned nothing')
    fails('train_conditional.lua', { '--scheduler', lua_file('nostep.lua', 'return { config = { num_train_timesteps = 10 }, '
      .. 'add_noise = function() end, set_timesteps = function() end }') }, 'the scheduler has no method step')
  end)
  it('a builder that fails', function()
    fails('train_conditional.lua', { '--scheduler', lua_file('boom.lua', 'return function(cfg) error("no such schedule") end') },
      'no such schedule')
  end)
  it('an unknown --sample-scheduler (before training, not after it)', function()
    fails('train_conditional.lua', { '--sample-scheduler', 'fast' }, "%-%-sample%-scheduler: unknown scheduler 'fast'")
  end)
  it('sample.lua: an unknown scheduler', function()
    local out = dir .. '/ok'
    local r = h.script('train_conditional.lua', h.words(data_words(), h.TINY, h.TINY_COND, '--epochs', '1', '--no-samples',
      '--out', out))
    assert.are.equal(0, r.status, r.stderr)
    r = h.script('sample.lua', { '--checkpoint', out, '--scheduler', 'warp', '--out', dir .. '/s.png' })
    assert.are.equal(1, r.status)
    assert.matches("sample%.lua: error: %-%-scheduler: unknown scheduler 'warp'", r.stderr)
    r = h.script('sample.lua', { '--checkpoint', out, '--scheduler', lua_file('num2.lua', 'return "ddim"'), '--out', dir .. '/s.png' })
    assert.are.equal(1, r.status)
    assert.matches('expected a scheduler', r.stderr)
    r = h.script('sample.lua', { '--checkpoint', out, '--guidance', '-1', '--out', dir .. '/s.png' })
    assert.are.equal(2, r.status)
    assert.matches('argument %-%-guidance', r.stderr)
    assert.is_false(h.exists(dir .. '/s.png'))
  end)
end)

describe('a bad --label-net stops training before it starts', function()
  it('a missing file, or not a .lua file', function()
    fails('train_conditional.lua', { '--label-net', dir .. '/missing.lua' }, "%-%-label%-net: cannot read '.*missing%.lua'")
    fails('train_conditional.lua', { '--label-net', dir .. '/images.npy' }, 'expected the path of a %.lua file')
  end)
  it('a file that does not return a module', function()
    fails('train_conditional.lua', { '--label-net', lua_file('str.lua', 'return "Linear"') },
      'expected a module .* got a string')
    fails('train_conditional.lua', { '--label-net', lua_file('fn.lua', 'return function(w, d) return 7 end') },
      'expected a module .* got a number')
  end)
  it('a module with the wrong output shape (one forward on a dummy batch)', function()
    -- no Unsqueeze: [B, 8] instead of [B, tokens, 8]
    fails('train_conditional.lua', { '--label-net', lua_file('flat.lua',
      'return function(w, d) return ddpm.nn.Sequential(ddpm.nn.Linear(w, d)) end') },
      'maps labels %[2, 5%] to %[2, 8%] .* expected %[2, tokens, 8%]')
    -- the wrong width
    fails('train_conditional.lua', { '--label-net', lua_file('wide.lua',
      'return ddpm.nn.Sequential(ddpm.nn.Linear(5, 16), ddpm.nn.Unsqueeze(1))') }, 'to %[2, 1, 16%]')
    -- the wrong label width: the forward itself fails
    fails('train_conditional.lua', { '--label-net', lua_file('narrow.lua',
      'return ddpm.nn.Sequential(ddpm.nn.Linear(3, 8), ddpm.nn.Unsqueeze(1))') }, 'the label net fails on a batch of labels %[2, 5%]')
  end)
end)

describe('experiment settings out of range', function()
  it('--mask-prob outside [0, 1] (the recipe) and --mask-probs (the experiment)', function()
    fails('train_better_conditional.lua', { '--mask-prob', '1.5' }, 'argument %-%-mask%-prob: .*1%.5', 2)
    fails('train_better_conditional.lua', { '--mask-prob', '-0.1' }, 'argument %-%-mask%-prob', 2)
    fails('experiments/label_masking.lua', { '--mask-probs', '0,1.2' }, 'argument %-%-mask%-probs', 2)
  end)
  it('guidance below 0', function()
    fails('train_conditional.lua', { '--guidance', '-1' }, 'argument %-%-guidance', 2)
    fails('experiments/label_masking.lua', { '--guidance', '1,-2' }, 'argument %-%-guidance', 2)
  end)
  it('--zero-snr with noise prediction', function()
    fails('train_conditional.lua', { '--zero-snr' }, '%-%-zero%-snr needs %-%-prediction%-type v_prediction')
  end)
  it('the experiment checks the swaps before it trains anything (not even its classifier)', function()
    local out = dir .. '/exp_bad'
    local r = h.script('experiments/label_masking.lua', h.words(data_words(), h.TINY, h.TINY_COND, '--out', out,
      '--label-net', lua_file('flat2.lua', 'return ddpm.nn.Linear(5, 8)')))
    assert.are.equal(1, r.status, r.stderr)
    assert.matches('label_masking%.lua: error: .*expected %[2, tokens, 8%]', r.stderr)
    assert.is_false(h.exists(out .. '/classifier'))
    r = h.script('experiments/label_masking.lua', h.words(data_words(), h.TINY, h.TINY_COND, '--out', dir .. '/exp_bad2',
      '--scheduler', 'nope'))
    assert.are.equal(1, r.status, r.stderr)
    assert.matches("unknown scheduler 'nope'", r.stderr)
    r = h.script('experiments/label_masking.lua', h.words(data_words(), h.TINY, h.TINY_COND, '--out', dir .. '/exp_bad3',
      '--classifier', dir .. '/no_classifier'))
    assert.are.equal(1, r.status, r.stderr)
    assert.matches('no classifier%.json in', r.stderr)
    -- the recipe's L1 loss cannot take Min-SNR weighting: refused before the classifier is trained
    out = dir .. '/exp_bad4'
    r = h.script('experiments/label_masking.lua', h.words(data_words(), h.TINY, h.TINY_COND, '--out', out, '--snr-gamma', '5'))
    assert.are.equal(1, r.status, r.stderr)
    assert.matches('%-%-snr%-gamma weights the mse loss.*%-%-loss l1', r.stderr)
    assert.is_false(h.exists(out .. '/classifier'))
  end)
end)
