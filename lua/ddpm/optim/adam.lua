-- optim/adam.lua: Adam and AdamW (≈ torch.optim.Adam / AdamW, PyTorch 1.13 single-tensor
-- formulas), one fused C call per parameter group.
--
--   opt = ddpm.optim.Adam(params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-8, weight_decay=0,
--                                  amsgrad=false, maximize=false})
--   opt = ddpm.optim.AdamW(params, {lr=1e-3, ..., weight_decay=1e-2})   -- decoupled decay
--
-- params: a list of tensors, or of groups {params={...}, lr=...} overriding the defaults.
-- state (per parameter, kept apart from the config): step (number), exp_avg, exp_avg_sq
-- (and max_exp_avg_sq with amsgrad), all tensors shaped like the parameter.
-- Update at step t (g the gradient, L2 decay for Adam adds wd*p to g; AdamW scales p by 1-lr*wd):
--   m = b1*m + (1-b1)*g ;  v = b2*v + (1-b2)*g^2
--   p = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
local ffi = require 'ffi'
local F = require 'ddpm.ffi'
local Optimizer = require 'ddpm.optim.optimizer'
local C, raise = F.C, F.raise
local function zeros_like(p) return require('ddpm').zeros_like(p) end

local function validate(self, g, where)
  local num = Optimizer.check_number
  num(where, 'lr', g.lr, 0)
  if type(g.betas) ~= 'table' or #g.betas ~= 2 then
    raise(string.format('%s: betas must be a pair {beta1, beta2}, got %s', where, tostring(g.betas)))
  end
  num(where, 'beta parameter at index 1 (betas[1])', g.betas[1], 0, 1, true)
  num(where, 'beta parameter at index 2 (betas[2])', g.betas[2], 0, 1, true)
  num(where, 'eps', g.eps, 0)
  num(where, 'weight_decay', g.weight_decay, 0)
  for _, k in ipairs({ 'amsgrad', 'maximize' }) do
    if type(g[k]) ~= 'boolean' then raise(string.format('%s: %s must be a boolean, got %s', where, k, tostring(g[k]))) end
  end
end

local function make(name, defaults, decoupled)
  local cls
  cls = Optimizer.subclass({
    name = name,
    defaults = defaults,
    -- accepted for PyTorch compatibility, no effect here (the update is always fused)
    optional_keys = { foreach = true, capturable = true, differentiable = true, fused = true, initial_lr = true },
    validate = validate,
  })
  function cls:update(g, ps, gs, ss)
    local n = #ps
    local cache = self._cache
    if cache == nil then
      cache = {}
      self._cache = cache
    end
    local gc = cache[g]
    if gc == nil then
      gc = {}
      cache[g] = gc
    end
    local ams = g.amsgrad
    for i = 1, n do
      local s, p = ss[i], ps[i]
      if s.step == nil then
        s.step = 0
        s.exp_avg = zeros_like(p)
        s.exp_avg_sq = zeros_like(p)
      end
      if ams and s.max_exp_avg_sq == nil then s.max_exp_avg_sq = zeros_like(p) end
    end
    local steps = gc.steps
    if steps == nil or gc.nsteps < n then
      steps = ffi.new('double[?]', n)
      gc.steps, gc.nsteps = steps, n
    end
    for i = 1, n do steps[i - 1] = ss[i].step + 1 end
    local A = Optimizer.array
    local pa, ga = A(gc, 'p', ps), A(gc, 'g', gs)
    local ma, va = A(gc, 'm', ss, 'exp_avg'), A(gc, 'v', ss, 'exp_avg_sq')
    local vm = ams and A(gc, 'vm', ss, 'max_exp_avg_sq') or nil
    local flags = (ams and 1 or 0) + (g.maximize and 2 or 0) + (decoupled and 4 or 0)
    local st = C.ddpm_adam_step_(n, pa, ga, ma, va, vm, steps, g.lr, g.betas[1], g.betas[2], g.eps, g.weight_decay,
      flags)
    if st ~= 0 then raise(F.last_error()) end
    for i = 1, n do ss[i].step = steps[i - 1] end
  end
  return cls
end

local M = {}
M.Adam = make('Adam', { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0, amsgrad = false,
  maximize = false }, false)
M.AdamW = make('AdamW', { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 1e-2, amsgrad = false,
  maximize = false }, true)
return M
