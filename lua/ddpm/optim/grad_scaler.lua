-- optim/grad_scaler.lua: dynamic loss scaling for mixed-precision training (≈ torch.cuda.amp.GradScaler
-- with PyTorch's semantics; exposed as ddpm.amp.GradScaler).  Works on any device: the unscale
-- and inf/NaN check is one fused C call over all gradients of an optimizer.
--
--   local scaler = ddpm.amp.GradScaler()          -- {init_scale=65536, growth_factor=2,
--                                                 --  backoff_factor=0.5, growth_interval=2000, enabled=true}
--   scaler:scale(loss):backward()
--   scaler:unscale_(opt)                          -- optional, e.g. before clip_grad_norm_
--   scaler:step(opt)                              -- skipped when an inf/NaN gradient was found
--   scaler:update()
local ffi = require 'ffi'
local F = require 'ddpm.ffi'
local T = require 'ddpm.tensor'
local C, raise = F.C, F.raise
local is_tensor = T.is_tensor

-- the scale is a float32 value in PyTorch (a float32 tensor): round like it
local fbuf = ffi.new('float[1]')
local function f32(x)
  fbuf[0] = x
  return fbuf[0]
end

local READY, UNSCALED, STEPPED = 0, 1, 2

local GradScaler = {}
GradScaler.__index = GradScaler

function GradScaler.new(opts)
  opts = opts or {}
  if type(opts) ~= 'table' then raise('GradScaler: options must be a table, got ' .. type(opts)) end
  local known = { init_scale = true, growth_factor = true, backoff_factor = true, growth_interval = true, enabled = true }
  for k in pairs(opts) do
    if not known[k] then
      raise(string.format("GradScaler: unknown option '%s'; expected some of: backoff_factor, enabled, growth_factor, "
        .. 'growth_interval, init_scale', tostring(k)))
    end
  end
  local self = setmetatable({}, GradScaler)
  self._enabled = opts.enabled ~= false
  local init_scale = opts.init_scale or 2.0 ^ 16
  self._growth_factor = opts.growth_factor or 2.0
  self._backoff_factor = opts.backoff_factor or 0.5
  self._growth_interval = opts.growth_interval or 2000
  if self._enabled then
    if type(init_scale) ~= 'number' or not (init_scale > 0) then
      raise('GradScaler: init_scale must be a positive number, got ' .. tostring(init_scale))
    end
    if type(self._growth_factor) ~= 'number' or not (self._growth_factor > 1.0) then
      raise('GradScaler: The growth factor must be > 1.0, got ' .. tostring(self._growth_factor))
    end
    if type(self._backoff_factor) ~= 'number' or not (self._backoff_factor < 1.0 and self._backoff_factor > 0) then
      raise('GradScaler: The backoff factor must be < 1.0 (and > 0), got ' .. tostring(self._backoff_factor))
    end
    local gi = self._growth_interval
    if type(gi) ~= 'number' or gi ~= math.floor(gi) or gi <= 0 then
      raise('GradScaler: growth_interval must be a positive integer, got ' .. tostring(gi))
    end
  end
  self._scale = f32(init_scale)
  self._growth_tracker = 0
  self._per_optimizer = setmetatable({}, { __mode = 'k' })
  return self
end
setmetatable(GradScaler, { __call = function(_, opts) return GradScaler.new(opts) end })

function GradScaler:__tostring()
  return string.format('GradScaler(scale=%g, enabled=%s)', self:get_scale(), tostring(self._enabled))
end

local function opt_state(self, opt)
  local s = self._per_optimizer[opt]
  if s == nil then
    s = { stage = READY }
    self._per_optimizer[opt] = s
  end
  return s
end

-- scale(outputs): outputs * scale; a tensor or a (nested) list of tensors.  Disabled: unchanged.
function GradScaler:scale(outputs)
  if not self._enabled then return outputs end
  if is_tensor(outputs) then return outputs * self._scale end
  if type(outputs) == 'table' then
    local r = {}
    for k, v in pairs(outputs) do r[k] = self:scale(v) end
    return r
  end
  raise('GradScaler:scale: outputs must be a tensor or a table of tensors, got ' .. type(outputs))
end

local function grads_of(opt)
  local gs = {}
  for _, g in ipairs(opt.param_groups) do
    for _, p in ipairs(g.params) do
      local gr = p.grad
      if gr ~= nil then gs[#gs + 1] = gr end
    end
  end
  return gs
end

-- unscale_(opt): divide the optimizer's gradients by the scale, once per step, noting inf/NaN.
function GradScaler:unscale_(opt)
  if not self._enabled then return end
  if type(opt) ~= 'table' or type(opt.param_groups) ~= 'table' then
    raise('GradScaler:unscale_: expected an optimizer, got ' .. type(opt))
  end
  local s = opt_state(self, opt)
  if s.stage == UNSCALED then
    raise('GradScaler:unscale_: unscale_() has already been called on this optimizer since the last update()')
  elseif s.stage == STEPPED then
    raise('GradScaler:unscale_: unscale_() is being called after step()')
  end
  -- PyTorch computes inv_scale in double and rounds it to float32
  local inv_scale = f32(1.0 / self._scale)
  local gs = grads_of(opt)
  local found = false
  -- one fused call per (device, dtype): found_inf lives on the gradients' device
  local buckets, order = {}, {}
  for _, g in ipairs(gs) do
    if g.dtype.name == 'float16' or g.dtype.name == 'bfloat16' then
      raise('GradScaler:unscale_: attempting to unscale ' .. g.dtype.name .. ' gradients; keep float32 master '
        .. 'parameters (autocast computes in low precision, parameters and their gradients stay float32)')
    end
    local key = tostring(g.device) .. '/' .. g.dtype.name
    local b = buckets[key]
    if b == nil then
      b = {}
      buckets[key] = b
      order[#order + 1] = key
    end
    b[#b + 1] = g
  end
  local ddpm = require 'ddpm'
  for _, key in ipairs(order) do
    local b = buckets[key]
    local arr = ffi.new('ddpm_tensor*[?]', #b)
    for i, g in ipairs(b) do arr[i - 1] = g end
    local found_inf = ddpm.zeros(1, { device = b[1].device })
    local st = C.ddpm_amp_unscale_(#b, arr, found_inf, inv_scale)
    if st ~= 0 then raise(F.last_error()) end
    if found_inf:item() ~= 0 then found = true end
  end
  s.found_inf = found
  s.stage = UNSCALED
end

-- step(opt): unscale_ if not done yet, then opt:step() unless an inf/NaN was found.
-- Returns what opt:step() returned (nil when skipped).
function GradScaler:step(opt, ...)
  if not self._enabled then return opt:step(...) end
  if select('#', ...) > 0 and type((...)) == 'function' then
    raise('GradScaler:step: closure use is not supported when the GradScaler is enabled')
  end
  local s = opt_state(self, opt)
  if s.stage == STEPPED then raise('GradScaler:step: step() has already been called since the last update()') end
  if s.stage == READY then self:unscale_(opt) end
  local ret
  if not s.found_inf then ret = opt:step(...) end
  s.stage = STEPPED
  return ret
end

-- update(new_scale?): back off after an inf/NaN, grow after growth_interval clean steps.
function GradScaler:update(new_scale)
  if not self._enabled then return end
  if new_scale ~= nil then
    if is_tensor(new_scale) then new_scale = new_scale:item() end
    if type(new_scale) ~= 'number' then raise('GradScaler:update: new_scale must be a number or a one-element tensor') end
    self._scale = f32(new_scale)
  else
    local any, found = false, false
    for _, s in pairs(self._per_optimizer) do
      if s.found_inf ~= nil then
        any = true
        found = found or s.found_inf
      end
    end
    if not any then raise('GradScaler:update: no inf checks were recorded prior to update(); call step() or unscale_() first') end
    if found then
      self._scale = f32(self._scale * f32(self._backoff_factor))
      self._growth_tracker = 0
    else
      local successful = self._growth_tracker + 1
      if successful == self._growth_interval then
        local grown = f32(self._scale * f32(self._growth_factor))
        if grown < math.huge then self._scale = grown end
        self._growth_tracker = 0
      else
        self._growth_tracker = successful
      end
    end
  end
  self._per_optimizer = setmetatable({}, { __mode = 'k' })
end

function GradScaler:get_scale() return self._enabled and self._scale or 1.0 end
function GradScaler:get_growth_factor() return self._growth_factor end
function GradScaler:set_growth_factor(v) self._growth_factor = v end
function GradScaler:get_backoff_factor() return self._backoff_factor end
function GradScaler:set_backoff_factor(v) self._backoff_factor = v end
function GradScaler:get_growth_interval() return self._growth_interval end
function GradScaler:set_growth_interval(v) self._growth_interval = v end
function GradScaler:is_enabled() return self._enabled end

function GradScaler:state_dict()
  if not self._enabled then return {} end
  return { scale = self:get_scale(), growth_factor = self._growth_factor, backoff_factor = self._backoff_factor,
    growth_interval = self._growth_interval, _growth_tracker = self._growth_tracker }
end

function GradScaler:load_state_dict(sd)
  if not self._enabled then return end
  if type(sd) ~= 'table' or next(sd) == nil then
    raise('GradScaler:load_state_dict: the state dict is empty, possibly because it was saved from a disabled GradScaler')
  end
  for _, k in ipairs({ 'scale', 'growth_factor', 'backoff_factor', 'growth_interval', '_growth_tracker' }) do
    if type(sd[k]) ~= 'number' then raise(string.format('GradScaler:load_state_dict: %s must be a number', k)) end
  end
  self._scale = f32(sd.scale)
  self._growth_factor, self._backoff_factor = sd.growth_factor, sd.backoff_factor
  self._growth_interval, self._growth_tracker = sd.growth_interval, sd._growth_tracker
end

return GradScaler
