-- optim/ema.lua: exponential moving average of model weights (≈ diffusers.training_utils.EMAModel,
-- v0.27.2 semantics): shadow copies updated by one fused C call per step.
--
--   local ema = ddpm.optim.EMAModel(unet:parameters(), {decay=0.9999, min_decay=0,
--       update_after_step=0, use_ema_warmup=false, inv_gamma=1, power=2/3})
--   ... opt:step(); ema:step(unet:parameters())
--   ema:store(ps); ema:copy_to(ps); <evaluate>; ema:restore(ps)
local ffi = require 'ffi'
local F = require 'ddpm.ffi'
local T = require 'ddpm.tensor'
local C, raise = F.C, F.raise
local is_tensor = T.is_tensor

local EMAModel = {}
EMAModel.__index = EMAModel

local defaults = { decay = 0.9999, min_decay = 0.0, update_after_step = 0, use_ema_warmup = false, inv_gamma = 1.0,
  power = 2 / 3 }

-- a parameter list, or a module (anything with :parameters())
local function param_list(x, what)
  if type(x) == 'table' and type(x.parameters) == 'function' and not is_tensor(x[1]) then x = x:parameters() end
  if type(x) ~= 'table' then raise(string.format('EMAModel:%s: expected a list of parameters, got %s', what, type(x))) end
  for i, p in ipairs(x) do
    if not is_tensor(p) then raise(string.format('EMAModel:%s: parameter %d is %s, expected a tensor', what, i, type(p))) end
  end
  return x
end

local function no_grad(fn) return require('ddpm').no_grad(fn) end

local function check_config(c, where)
  local function num(k, lo, hi)
    local v = c[k]
    if type(v) ~= 'number' or v ~= v or v < lo or (hi and v > hi) then
      raise(string.format('%s: %s must be a number in [%s, %s], got %s', where, k, tostring(lo), hi and tostring(hi) or 'inf',
        tostring(v)))
    end
  end
  num('decay', 0, 1)
  num('min_decay', 0, 1)
  num('update_after_step', 0)
  num('inv_gamma', 1e-300)
  num('power', 0)
  if type(c.use_ema_warmup) ~= 'boolean' then
    raise(string.format('%s: use_ema_warmup must be a boolean, got %s', where, tostring(c.use_ema_warmup)))
  end
end

function EMAModel.new(params, opts)
  opts = opts or {}
  if type(opts) ~= 'table' then raise('EMAModel: options must be a table, got ' .. type(opts)) end
  local self = setmetatable({}, EMAModel)
  for k, v in pairs(defaults) do self[k] = v end
  for k, v in pairs(opts) do
    if defaults[k] == nil and k ~= 'model_cls' and k ~= 'model_config' then
      local known = {}
      for kk in pairs(defaults) do known[#known + 1] = kk end
      table.sort(known)
      raise(string.format("EMAModel: unknown option '%s'; expected some of: %s", tostring(k), table.concat(known, ', ')))
    end
    self[k] = v
  end
  check_config(self, 'EMAModel')
  params = param_list(params, 'new')
  self.shadow_params = {}
  no_grad(function()
    for i, p in ipairs(params) do self.shadow_params[i] = p:detach():clone() end
  end)
  self.optimization_step = 0
  self.cur_decay_value = nil
  self.temp_stored_params = nil
  return self
end
setmetatable(EMAModel, { __call = function(_, params, opts) return EMAModel.new(params, opts) end })

function EMAModel:__tostring()
  return string.format('EMAModel(%d tensors, decay=%g, optimization_step=%d)', #self.shadow_params, self.decay,
    self.optimization_step)
end

-- the decay for a given optimization step (diffusers' get_decay)
function EMAModel:get_decay(optimization_step)
  local step = math.max(0, optimization_step - self.update_after_step - 1)
  if step <= 0 then return 0.0 end
  local d
  if self.use_ema_warmup then
    d = 1 - (1 + step / self.inv_gamma) ^ -self.power
  else
    d = (1 + step) / (10 + step)
  end
  d = math.min(d, self.decay)
  return math.max(d, self.min_decay)
end

local function check_count(self, params, what)
  if #params ~= #self.shadow_params then
    raise(string.format('EMAModel:%s: got %d parameters but the EMA tracks %d', what, #params, #self.shadow_params))
  end
end

-- step(params): shadow -= (1 - decay) * (shadow - param) for trainable params; frozen params
-- (requires_grad false) are copied, as diffusers does.
function EMAModel:step(params)
  params = param_list(params, 'step')
  check_count(self, params, 'step')
  self.optimization_step = self.optimization_step + 1
  local decay = self:get_decay(self.optimization_step)
  self.cur_decay_value = decay
  local n = #params
  if self._arr == nil or self._narr < n then
    self._arr, self._arr2, self._narr = ffi.new('ddpm_tensor*[?]', n), ffi.new('ddpm_tensor*[?]', n), n
  end
  local k = 0
  for i, p in ipairs(params) do
    if p.requires_grad then
      self._arr[k], self._arr2[k] = self.shadow_params[i], p
      k = k + 1
    else
      no_grad(function() self.shadow_params[i]:copy_(p) end)
    end
  end
  if k > 0 then
    local st = C.ddpm_ema_update_(k, self._arr, self._arr2, decay)
    if st ~= 0 then raise(F.last_error()) end
  end
end

-- copy_to(params): write the averaged weights into params (e.g. for evaluation or saving)
function EMAModel:copy_to(params)
  params = param_list(params, 'copy_to')
  check_count(self, params, 'copy_to')
  no_grad(function()
    for i, p in ipairs(params) do p:copy_(self.shadow_params[i]) end
  end)
end

-- store(params) / restore(params): keep the training weights aside while the EMA ones are in use
function EMAModel:store(params)
  params = param_list(params, 'store')
  self.temp_stored_params = {}
  for i, p in ipairs(params) do self.temp_stored_params[i] = p:detach():cpu():clone() end
end

function EMAModel:restore(params)
  if self.temp_stored_params == nil then
    raise('EMAModel:restore: this EMAModel has no store()d weights to restore(); call store(params) first')
  end
  params = param_list(params, 'restore')
  if #params ~= #self.temp_stored_params then
    raise(string.format('EMAModel:restore: got %d parameters but %d were stored', #params, #self.temp_stored_params))
  end
  no_grad(function()
    for i, p in ipairs(params) do p:copy_(self.temp_stored_params[i]) end
  end)
  self.temp_stored_params = nil
end

-- to({device=, dtype=}): move the shadow weights (floating ones change dtype)
function EMAModel:to(device, dtype)
  if type(device) == 'table' and not is_tensor(device) and device.id == nil then device, dtype = device.device, device.dtype end
  for i, s in ipairs(self.shadow_params) do
    if s:is_floating_point() then
      if device and dtype then s = s:to(device, dtype) elseif device then s = s:to(device) elseif dtype then s = s:to(dtype) end
    elseif device then
      s = s:to(device)
    end
    self.shadow_params[i] = s
  end
  return self
end

-- state_dict(): the config, the step count and the shadow tensors (references, as diffusers)
function EMAModel:state_dict()
  local sd = { optimization_step = self.optimization_step, shadow_params = {} }
  for k in pairs(defaults) do sd[k] = self[k] end
  for i, s in ipairs(self.shadow_params) do sd.shadow_params[i] = s end
  return sd
end

function EMAModel:load_state_dict(sd)
  if type(sd) ~= 'table' then raise('EMAModel:load_state_dict: expected a table from state_dict(), got ' .. type(sd)) end
  local c = {}
  for k in pairs(defaults) do
    if sd[k] ~= nil then c[k] = sd[k] else c[k] = self[k] end
  end
  check_config(c, 'EMAModel:load_state_dict')
  local step = sd.optimization_step or self.optimization_step
  if type(step) ~= 'number' or step ~= math.floor(step) or step < 0 then
    raise('EMAModel:load_state_dict: optimization_step must be a non-negative integer, got ' .. tostring(step))
  end
  local shadow = sd.shadow_params
  if shadow ~= nil then
    if type(shadow) ~= 'table' then raise('EMAModel:load_state_dict: shadow_params must be a list of tensors') end
    if #shadow ~= #self.shadow_params then
      raise(string.format('EMAModel:load_state_dict: %d shadow_params but the EMA tracks %d', #shadow,
        #self.shadow_params))
    end
    for i, s in ipairs(shadow) do
      if not is_tensor(s) then raise(string.format('EMAModel:load_state_dict: shadow_params[%d] is %s, expected a tensor', i,
        type(s))) end
    end
  end
  for k, v in pairs(c) do self[k] = v end
  self.optimization_step = step
  if shadow ~= nil then
    -- copies (diffusers deep-copies the state dict), in the current shadow's dtype and device
    for i, s in ipairs(shadow) do
      local cur = self.shadow_params[i]
      self.shadow_params[i] = s:detach():to(cur.dtype, cur.device):clone()
    end
  end
end

return EMAModel
