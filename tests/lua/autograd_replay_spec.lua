-- autograd_replay_spec.lua: a conv2d or linear whose input is a norm's output keeps only a recipe
-- for it (engine/src/autograd.c, ddpm_ag_save_replayable) and replays the norm in its backward:
-- the gradients must be the very same bits as when the input is saved, through views too, and
-- the errors must name what went wrong.
local ddpm = require 'ddpm'
local F = ddpm.nn.functional
local testing = ddpm.testing

-- gradients of every leaf after loss = sum(f(x, params) * probe), as float64 tables
local function grads(f, leaves, probe)
  for _, t in ipairs(leaves) do t.grad = nil end
  local y = f()
  local loss = (y * probe):sum()
  loss:backward()
  local out = {}
  for i, t in ipairs(leaves) do out[i] = t.grad:clone() end
  return out
end

local function same_bits(a, b)
  for i = 1, #a do assert.is_true(a[i]:equal(b[i]), 'gradient ' .. i .. ' differs') end
end

describe('replayed norm outputs', function()
  local gen = ddpm.Generator():manual_seed(11)
  local function rn(...)
    local a = { ... }
    a[#a + 1] = { generator = gen }
    return ddpm.randn(unpack(a))
  end

  for _, dt in ipairs({ ddpm.float32, ddpm.float64 }) do
    it('conv2d after group_norm_silu / group_norm: identical gradients (' .. tostring(dt) .. ')', function()
      local x = rn(3, 16, 8, 8):to(dt):requires_grad_(true)
      local gw, gb = (rn(16) * 0.1 + 1):to(dt):requires_grad_(true), (rn(16) * 0.1):to(dt):requires_grad_(true)
      local w, b = (rn(24, 16, 3, 3) * 0.1):to(dt):requires_grad_(true), rn(24):to(dt):requires_grad_(true)
      local probe = rn(3, 24, 8, 8):to(dt)
      local leaves = { x, gw, gb, w, b }
      for _, norm in ipairs({ F.group_norm_silu, F.group_norm }) do
        local replayed = grads(function() return F.conv2d(norm(x, 4, gw, gb, 1e-6), w, b, 1, 1) end, leaves, probe)
        -- a clone is not a norm's output: the conv saves it as is
        local saved = grads(function() return F.conv2d(norm(x, 4, gw, gb, 1e-6):clone(), w, b, 1, 1) end, leaves, probe)
        same_bits(replayed, saved)
      end
    end)
  end

  it('linear after layer_norm through views (transpose, reshape)', function()
    local x = rn(4, 6, 10):requires_grad_(true)
    local lw, lb = (rn(10) * 0.1 + 1):requires_grad_(true), (rn(10) * 0.1):requires_grad_(true)
    local w, b = (rn(7, 10) * 0.3):requires_grad_(true), rn(7):requires_grad_(true)
    local probe = rn(6, 4, 7)
    local leaves = { x, lw, lb, w, b }
    local function f(copy)
      local n = F.layer_norm(x, { 10 }, lw, lb)
      if copy then n = n:clone() end
      return F.linear(n:transpose(0, 1), w, b)
    end
    same_bits(grads(function() return f(false) end, leaves, probe), grads(function() return f(true) end, leaves, probe))
  end)

  it('passes gradcheck through the replay', function()
    local o = { dtype = ddpm.float64, generator = gen, requires_grad = true }
    testing.gradcheck(function(x, g, w)
      return F.conv2d(F.group_norm_silu(x, 2, g, nil, 1e-5), w, nil, 1, 1)
    end, { ddpm.randn(2, 4, 5, 5, o), ddpm.randn(4, o), ddpm.randn(3, 4, 3, 3, o) })
  end)

  it('says so when the norm was freed by an earlier backward', function()
    local x = rn(2, 8, 4, 4):requires_grad_(true)
    local w = rn(8, 8, 3, 3):requires_grad_(true)
    local h = F.group_norm_silu(x, 2)
    local y = F.conv2d(h, w, nil, 1, 1)
    h:sum():backward() -- frees what the norm saved
    local ok, err = pcall(function() y:sum():backward() end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find('freed by an earlier backward', 1, true), tostring(err))
  end)
end)
