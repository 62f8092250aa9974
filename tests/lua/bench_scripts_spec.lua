-- bench_scripts_spec.lua: the benchmark programs of scripts/bench still run against the current
-- API and print the JSON lines that run.py reads (tiny sizes, 1 thread; no time is judged), and
-- the driver runs them and builds its table without the peer.
local H = require 'host_run'
local json = require 'ddpm.io.json'

local src = os.getenv('DDPM_SOURCE_DIR') or '.'
local bench = src .. '/scripts/bench/'

local function run_bench(script, args, env)
  local r = H.run(H.q(bench .. script) .. ' --threads 1 ' .. args, { env = env })
  assert.are.equal(0, r.status, script .. ' failed:\n' .. r.stderr .. r.stdout)
  local line = r.stdout:match('(%b{})%s*$')
  assert.is_not_nil(line, script .. ' printed no JSON line:\n' .. r.stdout)
  return json.decode(line)
end

local function check_record(rec, name, batch)
  assert.are.equal(name, rec.name)
  assert.are.equal('ours', rec.impl)
  assert.are.equal(batch, rec.batch)
  assert.are.equal(1, rec.threads)
  assert.is_true(rec.seconds > 0 and rec.min <= rec.seconds and rec.seconds <= rec.max)
  assert.are.equal(rec.reps, #rec.times)
  assert.is_true(rec.peak_rss_mb > 0)
  assert.are.equal('ddpm-lua', rec.versions.impl)
end

describe('scripts/bench', function()
  it('train_step.lua: one step of the reference job, with a per-op profile', function()
    local rec = run_bench('train_step.lua', '--batch 2 --steps 2 --warmup 0 --profile')
    check_record(rec, 'train_step', 2)
    assert.are.equal('fp32', rec.precision)
    assert.is_true(rec.loss > 0)
    local names = {}
    for _, op in ipairs(rec.profile.ops) do names[op.name] = op.calls end
    assert.is_true((names.conv2d or 0) > 0 and (names.conv2d_backward_input or 0) > 0, 'profile lacks conv2d')
    assert.are.equal(2, names.adam_step or names.adam)
  end)

  it('train_step.lua and sample_step.lua --bf16 run under autocast("cpu", bfloat16)', function()
    local rec = run_bench('train_step.lua', '--batch 2 --steps 1 --warmup 0 --bf16')
    assert.is_nil(rec.unsupported)
    check_record(rec, 'train_step_bf16', 2)
    assert.are.equal('bf16-autocast', rec.precision)
    assert.is_true(rec.loss > 0)
    local s = run_bench('sample_step.lua', '--batch 3 --steps 1 --warmup 0 --bf16')
    assert.is_nil(s.unsupported)
    check_record(s, 'sample_step_bf16', 3)
    assert.are.equal('bf16-autocast', s.precision)
  end)

  it('sample_step.lua, sample_full.lua and startup.lua', function()
    check_record(run_bench('sample_step.lua', '--batch 3 --steps 2 --warmup 1'), 'sample_step', 3)
    local full = run_bench('sample_full.lua', '--per-class 1 --inference-steps 2 --warmup 0')
    check_record(full, 'sample_full', 5)
    assert.are.equal(2, full.inference_steps)
    local st = run_bench('startup.lua', '', { BENCH_T0_NS = string.format('%.0f', os.time() * 1e9) })
    check_record(st, 'startup', 1)
    assert.are.equal('driver', st.clock)
  end)

  it('refuses unknown options with the usage', function()
    local r = H.run(H.q(bench .. 'train_step.lua') .. ' --bogus 3')
    assert.are_not.equal(0, r.status)
    assert.matches('unknown option %-%-bogus', r.stderr)
    assert.matches('usage: ddpm%-lua train_step.lua', r.stderr)
  end)

  it('run.sh builds its table from the Lua side alone (--ours-only)', function()
    if not H.have('/usr/bin/python3') then
      pending('needs /usr/bin/python3 for scripts/bench/run.py')
      return
    end
    local r = H.sh(H.q(bench .. 'run.sh') .. ' --ours-only --only startup --threads 1 --no-write')
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('| process start to first UNet forward | [%d.]+ | %- |', r.stdout)
  end)

  it('run.sh --only <a bf16 row> brings its fp32 row and the bf16/fp32 table', function()
    if not H.have('/usr/bin/python3') then
      pending('needs /usr/bin/python3 for scripts/bench/run.py')
      return
    end
    local r = H.sh(H.q(bench .. 'run.sh') .. ' --ours-only --quick --only sample_step_bf16_b20 --threads 1 --no-write')
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('2 measurements', r.stdout)
    assert.matches('| sampling step, batch 20 %(UNet %+ DDPM step%) | [%d.]+ |', r.stdout)
    assert.matches('| sampling step, batch 20, bf16 autocast | [%d.]+ | [%d.]+ | [%d.]+ | %- | %- | %- |', r.stdout)
  end)
end)
