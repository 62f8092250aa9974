-- optim/lr_scheduler.lua: learning-rate schedules.  torch-style LambdaLR / StepLR / ExponentialLR
-- (≈ torch.optim.lr_scheduler) and diffusers' named schedules (≈ diffusers.optimization:
-- get_scheduler('cosine', opt, {num_warmup_steps=500, num_training_steps=10000})).
--
-- As in PyTorch, constructing a schedule sets every group's 'initial_lr' and applies the factor
-- for step 0 at once; call sched:step() after each opt:step().
local raise = require('ddpm.ffi').raise

local M = {}

-- ---- the base: last_epoch counting, base_lrs, state_dict ---------------------------------------
local Base = {}
Base.__index = Base

local function init(self, name, opt, last_epoch)
  if type(opt) ~= 'table' or type(opt.param_groups) ~= 'table' then
    raise(string.format('%s: expected an optimizer (with param_groups), got %s', name, type(opt)))
  end
  last_epoch = last_epoch or -1
  if type(last_epoch) ~= 'number' or last_epoch ~= math.floor(last_epoch) or last_epoch < -1 then
    raise(string.format('%s: last_epoch must be an integer >= -1, got %s', name, tostring(last_epoch)))
  end
  self.name, self.optimizer = name, opt
  for i, g in ipairs(opt.param_groups) do
    if last_epoch == -1 then
      if g.initial_lr == nil then g.initial_lr = g.lr end
    elseif g.initial_lr == nil then
      raise(string.format("%s: param 'initial_lr' is not specified in param_groups[%d] when resuming an optimizer "
        .. '(pass last_epoch=-1 for a fresh schedule)', name, i - 1))
    end
  end
  self.base_lrs = {}
  for i, g in ipairs(opt.param_groups) do self.base_lrs[i] = g.initial_lr end
  self.last_epoch = last_epoch
  self._step_count = 0
  self:step()
  return self
end

function Base:step()
  self._step_count = self._step_count + 1
  self.last_epoch = self.last_epoch + 1
  local lrs = self:get_lr()
  self._last_lr = {}
  for i, g in ipairs(self.optimizer.param_groups) do
    g.lr = lrs[i]
    self._last_lr[i] = lrs[i]
  end
end

-- the learning rates set by the last step(), one per parameter group (a Lua list)
function Base:get_last_lr()
  local r = {}
  for i, v in ipairs(self._last_lr) do r[i] = v end
  return r
end

local state_keys = { 'base_lrs', 'last_epoch', '_step_count', '_last_lr' }
function Base:state_dict()
  local sd = {}
  for _, k in ipairs(state_keys) do
    local v = self[k]
    if type(v) == 'table' then
      local c = {}
      for i, x in ipairs(v) do c[i] = x end
      v = c
    end
    sd[k] = v
  end
  sd.step_size, sd.gamma = self.step_size, self.gamma
  return sd
end

function Base:load_state_dict(sd)
  if type(sd) ~= 'table' or type(sd.last_epoch) ~= 'number' or type(sd.base_lrs) ~= 'table' then
    raise(self.name .. ':load_state_dict: expected a table from state_dict() with base_lrs and last_epoch')
  end
  for k, v in pairs(sd) do
    if type(v) == 'table' then
      local c = {}
      for i, x in ipairs(v) do c[i] = x end
      v = c
    end
    self[k] = v
  end
end

local function class(name, get_lr)
  local cls = setmetatable({}, { __index = Base })
  cls.__index = cls
  cls.get_lr = get_lr
  cls.__tostring = function(s) return string.format('%s(last_epoch=%d)', name, s.last_epoch) end
  return cls
end

-- ---- LambdaLR(opt, lr_lambda | {one per group}, {last_epoch=-1}) --------------------------------
local LambdaLR = class('LambdaLR', function(self)
  local r = {}
  for i, base in ipairs(self.base_lrs) do r[i] = base * self.lr_lambdas[i](self.last_epoch) end
  return r
end)
function M.LambdaLR(opt, lr_lambda, opts)
  local self = setmetatable({}, LambdaLR)
  local n = type(opt) == 'table' and type(opt.param_groups) == 'table' and #opt.param_groups or 0
  if type(lr_lambda) == 'function' then
    self.lr_lambdas = {}
    for i = 1, n do self.lr_lambdas[i] = lr_lambda end
  elseif type(lr_lambda) == 'table' then
    if #lr_lambda ~= n then
      raise(string.format('LambdaLR: expected %d lr_lambdas (one per parameter group), got %d', n, #lr_lambda))
    end
    for i, f in ipairs(lr_lambda) do
      if type(f) ~= 'function' then raise(string.format('LambdaLR: lr_lambda %d is %s, expected a function', i, type(f))) end
    end
    self.lr_lambdas = lr_lambda
  else
    raise('LambdaLR: lr_lambda must be a function of the step (or one per group), got ' .. type(lr_lambda))
  end
  return init(self, 'LambdaLR', opt, opts and opts.last_epoch)
end

-- ---- StepLR(opt, step_size, {gamma=0.1, last_epoch=-1}): PyTorch's chainable form -----------
local StepLR = class('StepLR', function(self)
  local r = {}
  for i, g in ipairs(self.optimizer.param_groups) do
    if self.last_epoch == 0 or self.last_epoch % self.step_size ~= 0 then r[i] = g.lr else r[i] = g.lr * self.gamma end
  end
  return r
end)
function M.StepLR(opt, step_size, opts)
  opts = opts or {}
  if type(step_size) ~= 'number' or step_size < 1 or step_size ~= math.floor(step_size) then
    raise('StepLR: step_size must be a positive integer, got ' .. tostring(step_size))
  end
  local self = setmetatable({ step_size = step_size, gamma = opts.gamma or 0.1 }, StepLR)
  return init(self, 'StepLR', opt, opts.last_epoch)
end

-- ---- ExponentialLR(opt, gamma, {last_epoch=-1}) ----------------------------------------------------
local ExponentialLR = class('ExponentialLR', function(self)
  local r = {}
  for i, g in ipairs(self.optimizer.param_groups) do r[i] = self.last_epoch == 0 and g.lr or g.lr * self.gamma end
  return r
end)
function M.ExponentialLR(opt, gamma, opts)
  if type(gamma) ~= 'number' then raise('ExponentialLR: gamma must be a number, got ' .. type(gamma)) end
  local self = setmetatable({ gamma = gamma }, ExponentialLR)
  return init(self, 'ExponentialLR', opt, opts and opts.last_epoch)
end

-- ---- diffusers' named schedules --------------------------------------------------------------------
local function warmup(step, nw) return step / math.max(1, nw) end

local factories = {}
function factories.constant() return function() return 1 end end
function factories.constant_with_warmup(o)
  local nw = o.num_warmup_steps
  return function(step)
    if step < nw then return step / math.max(1.0, nw) end
    return 1.0
  end
end
function factories.linear(o)
  local nw, nt = o.num_warmup_steps, o.num_training_steps
  return function(step)
    if step < nw then return warmup(step, nw) end
    return math.max(0.0, (nt - step) / math.max(1, nt - nw))
  end
end
function factories.cosine(o)
  local nw, nt = o.num_warmup_steps, o.num_training_steps
  -- diffusers' get_scheduler passes num_cycles only to 'cosine_with_restarts': 'cosine' is
  -- always half a cosine from the peak down to 0
  local cycles = 0.5
  return function(step)
    if step < nw then return warmup(step, nw) end
    local progress = (step - nw) / math.max(1, nt - nw)
    return math.max(0.0, 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress)))
  end
end
function factories.cosine_with_restarts(o)
  local nw, nt, cycles = o.num_warmup_steps, o.num_training_steps, o.num_cycles or 1
  return function(step)
    if step < nw then return warmup(step, nw) end
    local progress = (step - nw) / math.max(1, nt - nw)
    if progress >= 1.0 then return 0.0 end
    return math.max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((cycles * progress) % 1.0))))
  end
end
function factories.polynomial(o, opt)
  local nw, nt = o.num_warmup_steps, o.num_training_steps
  local lr_end, power = o.lr_end or 1e-7, o.power or 1.0
  local lr_init = opt.defaults.lr
  if not (lr_init > lr_end) then
    raise(string.format('get_scheduler: lr_end (%g) must be smaller than the initial lr (%g)', lr_end, lr_init))
  end
  return function(step)
    if step < nw then return warmup(step, nw) end
    if step > nt then return lr_end / lr_init end
    local pct_remaining = 1 - (step - nw) / (nt - nw)
    return ((lr_init - lr_end) * pct_remaining ^ power + lr_end) / lr_init
  end
end
function factories.piecewise_constant(o)
  local rules = o.step_rules
  if type(rules) ~= 'string' then
    raise("get_scheduler: 'piecewise_constant' needs step_rules such as '1:10,0.1:20,0.01'")
  end
  local parts = {}
  for part in rules:gmatch('[^,]+') do parts[#parts + 1] = part end
  local steps, values = {}, {}
  for i = 1, #parts - 1 do
    local v, s = parts[i]:match('^%s*([^:]+):([^:]+)%s*$')
    if not v or not tonumber(v) or not tonumber(s) then
      raise(string.format("get_scheduler: bad step rule '%s' in '%s'; expected value:steps", parts[i], rules))
    end
    steps[#steps + 1] = math.floor(tonumber(s))
    values[steps[#steps]] = tonumber(v)
  end
  local last = tonumber(parts[#parts])
  if not last then raise(string.format("get_scheduler: the last step rule in '%s' must be a number", rules)) end
  table.sort(steps)
  return function(step)
    for _, s in ipairs(steps) do if step < s then return values[s] end end
    return last
  end
end

local names = { 'constant', 'constant_with_warmup', 'linear', 'cosine', 'cosine_with_restarts', 'polynomial',
  'piecewise_constant' }
M.SCHEDULER_NAMES = names

-- get_scheduler(name, opt, {num_warmup_steps=, num_training_steps=, num_cycles=1, power=1.0,
--   lr_end=1e-7, step_rules=, last_epoch=-1}): a LambdaLR with diffusers' schedule of that name.
function M.get_scheduler(name, opt, opts)
  opts = opts or {}
  if type(opts) ~= 'table' then raise('get_scheduler: options must be a table, got ' .. type(opts)) end
  local make = factories[name]
  if not make then
    raise(string.format("get_scheduler: unknown schedule '%s'; expected one of: %s", tostring(name),
      table.concat(names, ', ')))
  end
  if type(opt) ~= 'table' or type(opt.param_groups) ~= 'table' then
    raise('get_scheduler: expected an optimizer as the second argument, got ' .. type(opt))
  end
  local function need(k)
    local v = opts[k]
    if v == nil then raise(string.format("get_scheduler: '%s' requires %s, please provide that option", name, k)) end
    if type(v) ~= 'number' or v < 0 then
      raise(string.format('get_scheduler: %s must be a non-negative number, got %s', k, tostring(v)))
    end
  end
  if name ~= 'constant' and name ~= 'piecewise_constant' then need('num_warmup_steps') end
  if name ~= 'constant' and name ~= 'piecewise_constant' and name ~= 'constant_with_warmup' then
    need('num_training_steps')
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  local sched = M.LambdaLR(opt, make(o, opt), { last_epoch = opts.last_epoch })
  sched.schedule_name = name
  return sched
end

return M
