-- optim/optimizer.lua: the optimizer base (≈ torch.optim.Optimizer): parameter groups with their
-- own hyper-parameters, per-parameter state kept apart from the config, zero_grad, and
-- state_dict/load_state_dict in PyTorch's layout for exact resumption.
--
-- Subclasses (sgd.lua, adam.lua) give a name, defaults, a validate(group) function and
-- update(group, params, grads, states), which makes ONE fused C call for the whole group.
local ffi = require 'ffi'
local F = require 'ddpm.ffi'
local T = require 'ddpm.tensor'
local C, raise = F.C, F.raise
local is_tensor = T.is_tensor

local Optimizer = {}
Optimizer.__index = Optimizer

local tensor_array = ffi.typeof('ddpm_tensor*[?]')

-- A subclass: a table with name, defaults, validate(self, group, where) and update(...).
-- Calling it constructs an optimizer: Adam(params, {lr=...}) or Adam(params, 1e-3).
function Optimizer.subclass(spec)
  local cls = setmetatable(spec, { __index = Optimizer })
  cls.__index = cls
  cls.__tostring = Optimizer.__tostring
  return setmetatable(cls, {
    __index = Optimizer,
    __call = function(c, params, opts) return Optimizer.new(c, params, opts) end,
  })
end

local function copy(t)
  if type(t) ~= 'table' then return t end
  local r = {}
  for k, v in pairs(t) do r[k] = (type(v) == 'table' and not is_tensor(v)) and copy(v) or v end
  return r
end

function Optimizer.new(cls, params, opts)
  local name = cls.name
  if type(opts) == 'number' then opts = { lr = opts } end
  if opts ~= nil and type(opts) ~= 'table' then
    raise(string.format('%s: options must be a table such as {lr=1e-3}, got %s', name, type(opts)))
  end
  local defaults = copy(cls.defaults)
  for k, v in pairs(opts or {}) do
    if defaults[k] == nil and not cls.optional_keys[k] then
      local known = {}
      for kk in pairs(cls.defaults) do known[#known + 1] = kk end
      table.sort(known)
      raise(string.format("%s: unknown option '%s'; expected some of: %s", name, tostring(k), table.concat(known, ', ')))
    end
    defaults[k] = v
  end
  local self = setmetatable({ defaults = defaults, param_groups = {}, state = {}, _seen = {} }, cls)
  if is_tensor(params) then
    raise(string.format('%s: params must be a list of tensors or of {params=...} groups, got a single tensor '
      .. '(wrap it: {t})', name))
  end
  if type(params) ~= 'table' then
    raise(string.format('%s: params must be a list of tensors or of {params=...} groups, got %s', name, type(params)))
  end
  if #params == 0 and type(params.parameters) == 'function' then
    raise(string.format('%s: params must be a list of tensors; pass model:parameters() rather than the model', name))
  end
  if #params == 0 then raise(name .. ': got an empty parameter list') end
  if is_tensor(params[1]) then
    self:add_param_group({ params = params })
  else
    for _, g in ipairs(params) do self:add_param_group(g) end
  end
  return self
end

function Optimizer:__tostring()
  local lines = { self.name .. ' (' }
  for i, g in ipairs(self.param_groups) do
    lines[#lines + 1] = string.format('Parameter Group %d', i - 1)
    local keys = {}
    for k in pairs(g) do if k ~= 'params' then keys[#keys + 1] = k end end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = g[k]
      if type(v) == 'table' then
        local parts = {}
        for j, x in ipairs(v) do parts[j] = tostring(x) end
        v = '(' .. table.concat(parts, ', ') .. ')'
      end
      lines[#lines + 1] = string.format('    %s: %s', k, tostring(v))
    end
  end
  lines[#lines + 1] = ')'
  return table.concat(lines, '\n')
end

-- add_param_group({params=..., lr=...}): missing keys come from the defaults.
function Optimizer:add_param_group(group)
  local name = self.name
  local where = string.format('%s: parameter group %d', name, #self.param_groups + 1)
  if type(group) ~= 'table' or is_tensor(group) then
    raise(string.format('%s must be a table {params={...}, ...}, got %s', where, is_tensor(group) and 'a tensor' or type(group)))
  end
  local plist = group.params
  if is_tensor(plist) then plist = { plist } end
  if type(plist) ~= 'table' then
    raise(string.format('%s: params must be a list of tensors, got %s', where, type(plist)))
  end
  local g = {}
  for k, v in pairs(group) do
    if k ~= 'params' then
      if self.defaults[k] == nil and not self.optional_keys[k] then
        raise(string.format("%s: unknown option '%s'", where, tostring(k)))
      end
      g[k] = copy(v)
    end
  end
  for k, v in pairs(self.defaults) do if g[k] == nil then g[k] = copy(v) end end
  local ps = {}
  for i, p in ipairs(plist) do
    if not is_tensor(p) then
      raise(string.format('%s: parameter %d is %s, expected a tensor', where, i, type(p)))
    end
    if not p.is_leaf then
      raise(string.format("%s: parameter %d is not a leaf tensor (it was made by %s); optimizers update leaf "
        .. 'tensors only: pass the parameters themselves, or :detach():requires_grad_() a copy', where, i,
        tostring(p.grad_fn)))
    end
    if not p:is_floating_point() then
      raise(string.format('%s: parameter %d is %s; only floating-point tensors can be optimized', where, i,
        tostring(p.dtype)))
    end
    -- identity of the tensor handle (ddpm_tensor_data is NULL for CUDA tensors, so data pointers
    -- cannot tell GPU parameters apart)
    local key = tostring(ffi.cast('const void *', p))
    if self._seen[key] then
      raise(string.format('%s: parameter %d appears more than once (in this or another group)', where, i))
    end
    self._seen[key] = true
    ps[i] = p
  end
  g.params = ps
  self:validate(g, where)
  self.param_groups[#self.param_groups + 1] = g
  return g
end

-- A number check with the option's name in the message.
function Optimizer.check_number(where, key, v, lo, hi, hi_open)
  if type(v) ~= 'number' or v ~= v then
    raise(string.format('%s: %s must be a number, got %s', where, key, tostring(v)))
  end
  local ok = v >= lo and (hi == nil or (hi_open and v < hi) or (not hi_open and v <= hi))
  if not ok then
    raise(string.format('%s: invalid %s %s; expected a value in [%s, %s%s', where, key, tostring(v), tostring(lo),
      hi and tostring(hi) or 'inf', (hi and hi_open) and ')' or ']'))
  end
end

-- zero_grad{set_to_none=true}: PyTorch 2's default drops the gradients (saving memory and a
-- pass over them; the next backward writes fresh ones); set_to_none=false zeroes them in place.
function Optimizer:zero_grad(opts)
  local to_none = true
  if type(opts) == 'table' and opts.set_to_none ~= nil then to_none = opts.set_to_none
  elseif type(opts) == 'boolean' then to_none = opts end
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do
      if to_none then
        F.check(C.ddpm_tensor_set_grad(p, nil))
      else
        local gr = p.grad
        if gr ~= nil then gr:zero_() end
      end
    end
  end
end

-- step(closure?): one fused update per group over the parameters that have a gradient.
function Optimizer:step(closure)
  local loss
  if closure ~= nil then
    if type(closure) ~= 'function' then raise(self.name .. ':step: closure must be a function, got ' .. type(closure)) end
    loss = require('ddpm').enable_grad(closure)
  end
  for _, g in ipairs(self.param_groups) do
    local ps, gs, ss = {}, {}, {}
    for _, p in ipairs(g.params) do
      local gr = p.grad
      if gr ~= nil then
        ps[#ps + 1], gs[#gs + 1] = p, gr
        local s = self.state[p]
        if s == nil then
          s = {}
          self.state[p] = s
        end
        ss[#ss + 1] = s
      end
    end
    if #ps > 0 then self:update(g, ps, gs, ss) end
  end
  return loss
end

-- Fill a cached ddpm_tensor*[] of at least n entries (kept per group: no garbage per step).
function Optimizer.array(cache, key, list, field)
  local n = #list
  local a = cache[key]
  if a == nil or cache[key .. '_n'] < n then
    a = tensor_array(math.max(n, 1))
    cache[key], cache[key .. '_n'] = a, n
  end
  for i = 1, n do
    local v = list[i]
    if field then v = v[field] end
    a[i - 1] = v
  end
  return a
end

-- ---- state_dict / load_state_dict (PyTorch's layout) -----------------------------------------
-- {state = {[0] = {step=, exp_avg=, ...}, [1] = ...}, param_groups = {{lr=, ..., params={0, 1, ...}}}}
-- Parameters are numbered from 0 across the groups in order, as PyTorch numbers them; the
-- tensors are references (as in PyTorch), so save them before stepping again.
function Optimizer:state_dict()
  local state, groups, idx = {}, {}, 0
  for gi, g in ipairs(self.param_groups) do
    local pg = {}
    for k, v in pairs(g) do if k ~= 'params' then pg[k] = copy(v) end end
    pg.params = {}
    for i, p in ipairs(g.params) do
      pg.params[i] = idx
      local s = self.state[p]
      if s ~= nil and next(s) ~= nil then
        local sc = {}
        for k, v in pairs(s) do sc[k] = v end
        state[idx] = sc
      end
      idx = idx + 1
    end
    groups[gi] = pg
  end
  return { state = state, param_groups = groups }
end

local function count_groups(sd_groups)
  local n = 0
  for _ in pairs(sd_groups) do n = n + 1 end
  return n
end

function Optimizer:load_state_dict(sd)
  local name = self.name
  if type(sd) ~= 'table' or type(sd.param_groups) ~= 'table' or (sd.state ~= nil and type(sd.state) ~= 'table') then
    raise(name .. ':load_state_dict: expected a table {state=..., param_groups=...} as returned by state_dict()')
  end
  local saved = sd.param_groups
  if count_groups(saved) ~= #self.param_groups then
    raise(string.format('%s:load_state_dict: the state dict has %d parameter groups but the optimizer has %d', name,
      count_groups(saved), #self.param_groups))
  end
  -- map saved ids to our parameters, checking group sizes
  local by_id = {}
  for gi, g in ipairs(self.param_groups) do
    local sg = saved[gi]
    if type(sg) ~= 'table' or type(sg.params) ~= 'table' then
      raise(string.format('%s:load_state_dict: parameter group %d has no params list', name, gi))
    end
    if #sg.params ~= #g.params then
      raise(string.format("%s:load_state_dict: parameter group %d has %d parameters in the state dict but %d in the "
        .. "optimizer; the state dict does not match this optimizer's groups", name, gi, #sg.params, #g.params))
    end
    for i, id in ipairs(sg.params) do by_id[tonumber(id)] = g.params[i] end
  end
  -- state: tensors are copied to the parameter's dtype/device (PyTorch casts floating state)
  local newstate = {}
  for id, s in pairs(sd.state or {}) do
    local p = by_id[tonumber(id)]
    if p == nil then
      raise(string.format('%s:load_state_dict: state for parameter id %s, which no group lists', name, tostring(id)))
    end
    local ns = {}
    for k, v in pairs(s) do
      if is_tensor(v) then
        if k == 'step' then
          ns[k] = v:item()
        elseif v:is_floating_point() then
          if v:numel() ~= p:numel() then
            raise(string.format('%s:load_state_dict: state %s of parameter %s has %d elements but the parameter has %d',
              name, k, tostring(id), v:numel(), p:numel()))
          end
          ns[k] = v:detach():to(p.dtype, p.device):clone():view_as(p)
        else
          ns[k] = v:clone()
        end
      else
        ns[k] = v
      end
    end
    newstate[p] = ns
  end
  for gi, g in ipairs(self.param_groups) do
    local sg = saved[gi]
    for k, v in pairs(sg) do
      if k ~= 'params' then g[k] = copy(v) end
    end
    self:validate(g, string.format('%s:load_state_dict: parameter group %d', name, gi))
  end
  self.state = newstate
end

return Optimizer
