-- optim/sgd.lua: stochastic gradient descent with momentum (≈ torch.optim.SGD, PyTorch 1.13
-- formulas), one fused C call per parameter group.
--
--   opt = ddpm.optim.SGD(params, {lr=0.1, momentum=0, dampening=0, weight_decay=0,
--                                 nesterov=false, maximize=false})
--
-- state (per parameter, kept apart from the config): momentum_buffer (with momentum != 0).
-- Update (g the gradient; -g with maximize):
--   g = g + wd*p ; b = g on the first step, else momentum*b + (1-dampening)*g
--   g = nesterov and g + momentum*b or b ;  p = p - lr*g
local ffi = require 'ffi'
local F = require 'ddpm.ffi'
local Optimizer = require 'ddpm.optim.optimizer'
local C, raise = F.C, F.raise

local function validate(self, g, where)
  if g.lr == nil then raise(where .. ': SGD needs a learning rate: SGD(params, {lr=0.01})') end
  local num = Optimizer.check_number
  num(where, 'lr', g.lr, 0)
  num(where, 'momentum', g.momentum, 0)
  num(where, 'weight_decay', g.weight_decay, 0)
  if type(g.dampening) ~= 'number' then raise(where .. ': dampening must be a number') end
  for _, k in ipairs({ 'nesterov', 'maximize' }) do
    if type(g[k]) ~= 'boolean' then raise(string.format('%s: %s must be a boolean, got %s', where, k, tostring(g[k]))) end
  end
  if g.nesterov and (g.momentum <= 0 or g.dampening ~= 0) then
    raise(where .. ': nesterov momentum requires a momentum > 0 and zero dampening')
  end
end

local SGD = Optimizer.subclass({
  name = 'SGD',
  -- lr has no default, as in PyTorch (lr=required); `false` marks it as a known key
  defaults = { lr = false, momentum = 0, dampening = 0, weight_decay = 0, nesterov = false, maximize = false },
  optional_keys = { foreach = true, differentiable = true, initial_lr = true },
  validate = function(self, g, where)
    if g.lr == false then g.lr = nil end
    validate(self, g, where)
  end,
})

function SGD:update(g, ps, gs, ss)
  local n = #ps
  self._cache = self._cache or {}
  local gc = self._cache[g]
  if gc == nil then
    gc = {}
    self._cache[g] = gc
  end
  local use_mom = g.momentum ~= 0
  local fresh, bufs = nil, nil
  if use_mom then
    fresh = gc.fresh
    if fresh == nil or gc.nfresh < n then
      fresh = ffi.new('int32_t[?]', n)
      gc.fresh, gc.nfresh = fresh, n
    end
    local zeros_like = require('ddpm').zeros_like
    for i = 1, n do
      local s = ss[i]
      if s.momentum_buffer == nil then
        s.momentum_buffer = zeros_like(ps[i])
        fresh[i - 1] = 1
      else
        fresh[i - 1] = 0
      end
    end
    bufs = Optimizer.array(gc, 'b', ss, 'momentum_buffer')
  end
  local flags = (g.nesterov and 1 or 0) + (g.maximize and 2 or 0)
  local st = C.ddpm_sgd_step_(n, Optimizer.array(gc, 'p', ps), Optimizer.array(gc, 'g', gs), bufs, fresh, g.lr,
    g.momentum, g.dampening, g.weight_decay, flags)
  if st ~= 0 then raise(F.last_error()) end
end

return { SGD = SGD }
