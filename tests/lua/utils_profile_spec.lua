-- utils_profile_spec.lua: the per-op profiler (engine/src/profile.c, ddpm.utils.profile): counts
-- calls per op only while on, charges composite kernels their self time, leaves state as found.
local ddpm = require 'ddpm'
local profile = require 'ddpm.utils.profile'

local function find(rep, name)
  for _, r in ipairs(rep.ops) do if r.name == name then return r end end
end

describe('ddpm.utils.profile', function()
  it('counts the kernels run inside profile(fn) and returns fn results', function()
    local a = ddpm.randn(8, 8)
    local rep, x, y = profile(function() return a:matmul(a):sum(), 'second' end)
    assert.are.equal('second', y)
    assert.is_true(ddpm.is_tensor(x))
    local mm, sum = find(rep, 'bmm') or find(rep, 'matmul') or find(rep, 'mm'), find(rep, 'sum')
    assert.is_not_nil(mm, 'no matmul kernel in\n' .. tostring(rep))
    assert.are.equal(1, mm.calls)
    assert.are.equal(1, sum.calls)
    assert.is_true(rep.wall >= rep.kernels and rep.kernels >= 0)
    assert.is_true(math.abs(rep.outside - (rep.wall - rep.kernels)) < 1e-12)
    for _, r in ipairs(rep.ops) do assert.is_true(r.seconds >= 0 and r.share >= 0 and r.share <= 1, r.name) end
    assert.matches('%(outside kernels%)', tostring(rep))
  end)

  it('counts backward kernels and sees repeated calls', function()
    local w = ddpm.randn(4, 4, { requires_grad = true })
    local rep = profile(function()
      for _ = 1, 3 do (w * 2):sum():backward() end
    end)
    local mul = find(rep, 'mul_scalar') or find(rep, 'mul')
    assert.is_not_nil(mul, tostring(rep))
    assert.is_true(mul.calls >= 3)
  end)

  it('is off by default and records nothing while off', function()
    if os.getenv('DDPM_PROFILE') == '1' then pending('DDPM_PROFILE=1 is set') return end
    assert.is_false(profile.enabled())
    local before = profile.snapshot()
    local a = ddpm.randn(4, 4)
    local _ = a + a
    local rep = profile.report(nil, before)
    assert.are.equal(0, #rep.ops)
  end)

  it('restores the previous state, also when fn fails', function()
    local was = profile.enabled()
    assert.has_error(function() profile(function() error('boom') end) end, 'boom')
    assert.are.equal(was, profile.enabled())
    profile.enable(true)
    profile(function() end)
    assert.is_true(profile.enabled())
    profile.enable(was)
  end)

  it('refuses what is not a function, and a bad op number in the C API', function()
    assert.has_error(function() profile(42) end, 'profile: expected a function to run, got number')
    local C = require('ddpm.ffi').C
    assert.are_not.equal(0, C.ddpm_profile_read(-1, nil, nil))
    assert.matches('profile_read: op %-1; expected 0 <= op <', require('ddpm.ffi').last_error())
  end)

  it('reset clears the running totals', function()
    profile.enable(true)
    local _ = ddpm.ones(3) + 1
    profile.reset()
    local rep = profile.report()
    profile.enable(false)
    assert.are.equal(0, #rep.ops)
  end)
end)
