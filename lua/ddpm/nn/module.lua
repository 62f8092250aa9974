-- nn/module.lua: nn.Module, the base of every layer (≈ torch.nn.Module): parameters, buffers and
-- children registered in order, recursive traversal, state dicts, train/eval, device/dtype moves,
-- forward hooks and PyTorch's printout.  Subclasses define __init and forward only.
--
-- Storage: a parameter, buffer or child lives in a plain field of the instance (m.weight,
-- m.conv1), so access costs one table lookup; its name is also kept in an ordered list
-- (_parameters, _buffers, _modules) which fixes the traversal and state-dict order.
-- Containers (Sequential, ModuleList) keep their children in the array part (m[1] is child "0")
-- through the _keys name -> field map.
local class = require 'ddpm.class'
local ffi = require 'ffi'
local T = require 'ddpm.tensor'
local D = require 'ddpm.dtype'
local F = require 'ddpm.ffi'
local R = require 'ddpm.nn.pyrepr'
local raise = F.raise
local is_tensor = T.is_tensor

local Module = class('Module')
Module.training = true -- instances set their own flag; this covers a subclass that skips __init

local function lists(self)
  local p = rawget(self, '_parameters')
  if not p then
    p = {}
    rawset(self, '_parameters', p)
    rawset(self, '_buffers', {})
    rawset(self, '_modules', {})
    rawset(self, '_keys', {})
    rawset(self, '_nonpersistent', {})
    if rawget(self, 'training') == nil then rawset(self, 'training', true) end
  end
  return p, rawget(self, '_buffers'), rawget(self, '_modules'), rawget(self, '_keys')
end

function Module:__init()
  lists(self)
end

local function is_module(v) return class.isinstance(v, Module) end
Module.is_module = is_module

-- Assigning a module to a new field registers it as a child (as `self.conv = nn.Conv2d(...)`
-- does in PyTorch); any other value is stored as a plain field.
function Module.__newindex(self, k, v)
  if is_module(v) and type(k) == 'string' then
    local _, _, mods = lists(self)
    local known = false
    for _, n in ipairs(mods) do if n == k then known = true break end end
    if not known then mods[#mods + 1] = k end
  end
  rawset(self, k, v)
end

-- a module call runs forward (and the hooks, if any were registered: the check is two rawgets)
function Module.__call(self, ...)
  if rawget(self, '_forward_hooks') == nil and rawget(self, '_forward_pre_hooks') == nil then
    return self:forward(...)
  end
  return self:_call_with_hooks(...)
end

local function pack(...) return { n = select('#', ...), ... } end
function Module:_call_with_hooks(...)
  local args = pack(...)
  for _, h in ipairs(rawget(self, '_forward_pre_hooks') or {}) do
    local r = h.fn(self, args)
    if r ~= nil then args = (type(r) == 'table' and r.n) and r or pack(r) end
  end
  local out = pack(self:forward(unpack(args, 1, args.n)))
  for _, h in ipairs(rawget(self, '_forward_hooks') or {}) do
    local r = h.fn(self, args, unpack(out, 1, out.n))
    if r ~= nil then out = pack(r) end
  end
  return unpack(out, 1, out.n)
end

function Module:forward()
  raise(string.format('%s: forward is not implemented (define %s:forward)', self:_get_name(), self:_get_name()))
end

-- ---- registration --------------------------------------------------------------------------------------
local function check_name(what, name)
  if type(name) ~= 'string' or name == '' or name:find('.', 1, true) then
    raise(string.format('%s: name must be a non-empty string without ".", got %s', what, tostring(name)))
  end
end
local function add_name(list, name)
  for _, n in ipairs(list) do if n == name then return end end
  list[#list + 1] = name
end

-- register_parameter(name, tensor_or_nil): a trainable tensor (requires_grad is switched on,
-- as nn.Parameter does).  nil registers an absent parameter (e.g. bias=False).
function Module:register_parameter(name, t)
  check_name('register_parameter', name)
  if t ~= nil and not is_tensor(t) then
    raise(string.format("register_parameter: '%s' must be a tensor or nil, got %s", name, type(t)))
  end
  local params = lists(self)
  add_name(params, name)
  if t ~= nil and not t.requires_grad and t.is_leaf and t:is_floating_point() then t:requires_grad_(true) end
  rawset(self, name, t)
  return t
end

-- register_buffer(name, tensor_or_nil, {persistent=true}): state that is saved but not trained
function Module:register_buffer(name, t, opts)
  check_name('register_buffer', name)
  if t ~= nil and not is_tensor(t) then
    raise(string.format("register_buffer: '%s' must be a tensor or nil, got %s", name, type(t)))
  end
  local _, bufs = lists(self)
  add_name(bufs, name)
  rawget(self, '_nonpersistent')[name] = (opts and opts.persistent == false) or nil
  rawset(self, name, t)
  return t
end

-- add_module(name, module_or_nil); register_module is its alias
function Module:add_module(name, m, key)
  if type(name) ~= 'string' or name == '' or name:find('.', 1, true) then
    raise(string.format('add_module: name must be a non-empty string without ".", got %s', tostring(name)))
  end
  if m ~= nil and not is_module(m) then
    raise(string.format("add_module: '%s' must be an nn.Module or nil, got %s", name, type(m)))
  end
  local _, _, mods, keys = lists(self)
  add_name(mods, name)
  if key ~= nil and key ~= name then keys[name] = key end
  rawset(self, key or name, m)
  return m
end
Module.register_module = Module.add_module

-- the child registered under `name` (nil if absent)
function Module:_child(name)
  local keys = rawget(self, '_keys')
  local k = keys and keys[name]
  if k == nil then k = name end
  return rawget(self, k)
end

-- ---- traversal -------------------------------------------------------------------------------------------
local function addr(t) return tostring(require('ddpm.tensor').address(t)) end

-- named_children(): iterator of name, child (registered order)
function Module:named_children()
  local _, _, mods = lists(self)
  local i = 0
  return function()
    while true do
      i = i + 1
      local n = mods[i]
      if n == nil then return nil end
      local c = self:_child(n)
      if c ~= nil then return n, c end
    end
  end
end
-- children(): array of the direct children
function Module:children()
  local out = {}
  for _, c in self:named_children() do out[#out + 1] = c end
  return out
end

local function collect_modules(m, prefix, out, seen)
  if seen[m] then return end
  seen[m] = true
  out[#out + 1] = { prefix, m }
  for n, c in m:named_children() do
    collect_modules(c, prefix == '' and n or (prefix .. '.' .. n), out, seen)
  end
end
-- named_modules(): iterator of name, module over this module and all descendants (pre-order;
-- this module itself has the name '')
function Module:named_modules(prefix)
  local out = {}
  collect_modules(self, prefix or '', out, {})
  local i = 0
  return function()
    i = i + 1
    local e = out[i]
    if e then return e[1], e[2] end
  end
end
function Module:modules()
  local out = {}
  for _, m in self:named_modules() do out[#out + 1] = m end
  return out
end

local function named_tensors(self, listname, opts)
  opts = opts or {}
  local recurse = opts.recurse ~= false
  local out, seen = {}, {}
  local function visit(prefix, m)
    lists(m)
    for _, n in ipairs(rawget(m, listname)) do
      local t = rawget(m, n)
      if t ~= nil then
        local a = addr(t)
        if not seen[a] then
          seen[a] = true
          out[#out + 1] = { prefix .. n, t }
        end
      end
    end
  end
  if recurse then
    for name, m in self:named_modules(opts.prefix) do visit(name == '' and '' or (name .. '.'), m) end
  else
    visit(opts.prefix and opts.prefix ~= '' and (opts.prefix .. '.') or '', self)
  end
  return out
end
local function iter(list)
  local i = 0
  return function()
    i = i + 1
    local e = list[i]
    if e then return e[1], e[2] end
  end
end

-- named_parameters({recurse=true, prefix=''}): iterator of name, tensor in registration order
function Module:named_parameters(opts) return iter(named_tensors(self, '_parameters', opts)) end
-- parameters(): array of the parameter tensors, in the same order
function Module:parameters(opts)
  local out = {}
  for i, e in ipairs(named_tensors(self, '_parameters', opts)) do out[i] = e[2] end
  return out
end
function Module:named_buffers(opts) return iter(named_tensors(self, '_buffers', opts)) end
function Module:buffers(opts)
  local out = {}
  for i, e in ipairs(named_tensors(self, '_buffers', opts)) do out[i] = e[2] end
  return out
end

-- num_parameters({only_trainable=false}): total element count
function Module:num_parameters(opts)
  local n = 0
  for _, p in ipairs(self:parameters()) do
    if not (opts and opts.only_trainable) or p.requires_grad then n = n + p:numel() end
  end
  return n
end

-- get_submodule('down_blocks.1.attentions.0'), get_parameter('conv_in.weight')
function Module:get_submodule(target)
  if target == nil or target == '' then return self end
  local m = self
  local path = {}
  for part in tostring(target):gmatch('[^.]+') do
    path[#path + 1] = part
    local c = is_module(m) and m:_child(part) or nil
    if c == nil then
      raise(string.format("get_submodule: %s has no submodule '%s'", m:_get_name(), table.concat(path, '.')))
    end
    m = c
  end
  return m
end
function Module:get_parameter(target)
  local mod, name = tostring(target):match('^(.*)%.([^.]+)$')
  if not mod then mod, name = '', target end
  local m = self:get_submodule(mod)
  local t = rawget(m, name)
  if not is_tensor(t) then raise(string.format("get_parameter: no parameter '%s'", target)) end
  return t
end

-- apply(fn): fn(m) on every descendant (children first) and then on self, as PyTorch
function Module:apply(fn)
  for _, c in self:named_children() do c:apply(fn) end
  fn(self)
  return self
end

-- ---- modes -------------------------------------------------------------------------------------------------
function Module:train(mode)
  if mode == nil then mode = true end
  for _, m in self:named_modules() do rawset(m, 'training', mode and true or false) end
  return self
end
function Module:eval() return self:train(false) end

-- requires_grad_(false) freezes every parameter; requires_grad_(true) unfreezes
function Module:requires_grad_(flag)
  if flag == nil then flag = true end
  for _, p in ipairs(self:parameters()) do p:requires_grad_(flag) end
  return self
end

-- zero_grad({set_to_none=true}): drop the gradients (PyTorch 2's default) or zero them in place
function Module:zero_grad(opts)
  local to_none = not (opts and opts.set_to_none == false)
  for _, p in ipairs(self:parameters()) do
    if to_none then
      p.grad = nil
    else
      local g = p.grad
      if g then g:zero_() end
    end
  end
  return self
end

-- ---- device / dtype -------------------------------------------------------------------------------------------
local function parse_to(...)
  local dtype, device
  for i = 1, select('#', ...) do
    local x = select(i, ...)
    if x == nil then
    elseif D.is_dtype(x) then dtype = x
    elseif D.is_device(x) then device = x.id
    elseif is_tensor(x) then dtype, device = x.dtype, D.parse_device(x.device)
    elseif type(x) == 'string' then
      if D.by_name[(x:gsub('^ddpm%.', ''))] then dtype = D.resolve(x) else device = D.parse_device(x, 'Module:to') end
    elseif type(x) == 'table' then
      if x.dtype then dtype = D.resolve(x.dtype, 'Module:to') end
      if x.device then device = D.parse_device(x.device, 'Module:to') end
    else
      raise("Module:to: expected a device ('cpu', 'cuda'), a dtype, a tensor or {device=, dtype=}, got " .. type(x))
    end
  end
  return dtype, device
end

local function moved(t, dtype, device)
  local want_dt = (dtype and t:is_floating_point()) and dtype or t.dtype
  local want_dev = device or D.parse_device(t.device)
  if want_dt == t.dtype and want_dev == D.parse_device(t.device) then return t end
  return t:to({ dtype = want_dt, device = D.device_from_id(want_dev) })
end

-- to(device | dtype | {device=, dtype=}): moves parameters and buffers (dtype only changes
-- floating-point tensors, as PyTorch).  Parameters are new tensors afterwards, so build the
-- optimizer after moving the model.
function Module:to(...)
  local dtype, device = parse_to(...)
  for _, m in self:named_modules() do
    lists(m)
    for _, n in ipairs(rawget(m, '_parameters')) do
      local p = rawget(m, n)
      if p ~= nil then
        local q = moved(p, dtype, device)
        if q ~= p then
          local rg = p.requires_grad
          q = q:detach()
          if rg then q:requires_grad_(true) end
          local g = p.grad
          if g then q.grad = moved(g, dtype, device) end
          rawset(m, n, q)
        end
      end
    end
    for _, n in ipairs(rawget(m, '_buffers')) do
      local b = rawget(m, n)
      if b ~= nil then rawset(m, n, moved(b, dtype, device)) end
    end
  end
  return self
end
function Module:cuda(idx) return self:to(idx and ('cuda:' .. idx) or 'cuda') end
function Module:cpu() return self:to('cpu') end
function Module:float() return self:to(D.by_name.float32) end
function Module:double() return self:to(D.by_name.float64) end
function Module:half() return self:to(D.by_name.float16) end
function Module:bfloat16() return self:to(D.by_name.bfloat16) end

-- ---- state dicts ---------------------------------------------------------------------------------------------------
-- state_dict(): {name = tensor} of parameters and persistent buffers, detached (sharing
-- storage with the module).  state_dict_keys() gives the names in registration order.
function Module:state_dict_keys()
  local keys = {}
  for name, m in self:named_modules() do
    local pre = name == '' and '' or (name .. '.')
    lists(m)
    for _, n in ipairs(rawget(m, '_parameters')) do
      if rawget(m, n) ~= nil then keys[#keys + 1] = pre .. n end
    end
    local np = rawget(m, '_nonpersistent')
    for _, n in ipairs(rawget(m, '_buffers')) do
      if rawget(m, n) ~= nil and not np[n] then keys[#keys + 1] = pre .. n end
    end
  end
  return keys
end

-- the (module, field) behind every state-dict key, in order
local function state_entries(self)
  local out = {}
  for name, m in self:named_modules() do
    local pre = name == '' and '' or (name .. '.')
    lists(m)
    for _, n in ipairs(rawget(m, '_parameters')) do
      if rawget(m, n) ~= nil then out[#out + 1] = { pre .. n, m, n } end
    end
    local np = rawget(m, '_nonpersistent')
    for _, n in ipairs(rawget(m, '_buffers')) do
      if rawget(m, n) ~= nil and not np[n] then out[#out + 1] = { pre .. n, m, n } end
    end
  end
  return out
end

function Module:state_dict(opts)
  local keep_vars = opts and opts.keep_vars
  local sd = {}
  for _, e in ipairs(state_entries(self)) do
    local t = rawget(e[2], e[3])
    sd[e[1]] = keep_vars and t or t:detach()
  end
  return sd
end

local function shape_str(t) return '[' .. table.concat(t:shape(), ', ') .. ']' end
local function quoted(list)
  local q = {}
  for i, k in ipairs(list) do q[i] = '"' .. k .. '"' end
  return table.concat(q, ', ')
end

-- load_state_dict(sd, {strict=true}): copies values into the existing tensors (keeping their
-- dtype and device).  Missing and unexpected keys (strict) and shape mismatches (always) are
-- reported together, by name.  Returns {missing_keys=, unexpected_keys=}.
function Module:load_state_dict(sd, opts)
  if type(sd) ~= 'table' then raise('load_state_dict: expected a table {name = tensor}, got ' .. type(sd)) end
  local strict = not (opts and opts.strict == false)
  local entries = state_entries(self)
  local own = {}
  local missing, unexpected, mismatched, badtype = {}, {}, {}, {}
  for _, e in ipairs(entries) do
    own[e[1]] = true
    local src = sd[e[1]]
    if src == nil then
      missing[#missing + 1] = e[1]
    elseif not is_tensor(src) then
      badtype[#badtype + 1] = string.format('%s: expected a tensor, got %s', e[1], type(src))
    else
      local dst = rawget(e[2], e[3])
      local ss, ds = src:shape(), dst:shape()
      local same = #ss == #ds
      if same then for i = 1, #ss do if ss[i] ~= ds[i] then same = false break end end end
      if not same then
        mismatched[#mismatched + 1] = string.format(
          'size mismatch for %s: copying a param with shape %s from checkpoint, the shape in current model is %s.',
          e[1], shape_str(src), shape_str(dst))
      end
    end
  end
  local keys = {}
  for k in pairs(sd) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do if not own[k] then unexpected[#unexpected + 1] = k end end
  local errs = {}
  if strict and #unexpected > 0 then errs[#errs + 1] = 'Unexpected key(s) in state_dict: ' .. quoted(unexpected) .. '.' end
  if strict and #missing > 0 then errs[#errs + 1] = 'Missing key(s) in state_dict: ' .. quoted(missing) .. '.' end
  for _, m in ipairs(mismatched) do errs[#errs + 1] = m end
  for _, m in ipairs(badtype) do errs[#errs + 1] = m end
  if #errs > 0 then
    raise(string.format('Error(s) in loading state_dict for %s:\n\t%s', self:_get_name(), table.concat(errs, '\n\t')))
  end
  local ddpm = require 'ddpm'
  ddpm.no_grad(function()
    for _, e in ipairs(entries) do
      local src = sd[e[1]]
      if src ~= nil then rawget(e[2], e[3]):copy_(src) end
    end
  end)
  return { missing_keys = missing, unexpected_keys = unexpected }
end

-- ---- hooks ---------------------------------------------------------------------------------------------------------
local Handle = {}
Handle.__index = Handle
function Handle:remove()
  local list = rawget(self.module, self.field)
  if not list then return end
  for i, h in ipairs(list) do
    if h == self then
      table.remove(list, i)
      break
    end
  end
  if #list == 0 then rawset(self.module, self.field, nil) end
end
local function add_hook(self, field, fn)
  if type(fn) ~= 'function' then raise('register hook: expected a function, got ' .. type(fn)) end
  local list = rawget(self, field)
  if not list then
    list = {}
    rawset(self, field, list)
  end
  local h = setmetatable({ module = self, field = field, fn = fn }, Handle)
  list[#list + 1] = h
  return h
end
-- register_forward_hook(fn): fn(module, args, output...) runs after forward; a non-nil return
-- replaces the output.  Returns a handle with :remove().
function Module:register_forward_hook(fn) return add_hook(self, '_forward_hooks', fn) end
-- register_forward_pre_hook(fn): fn(module, args) before forward (args = {n=, ...})
function Module:register_forward_pre_hook(fn) return add_hook(self, '_forward_pre_hooks', fn) end

-- ---- printing -------------------------------------------------------------------------------------------------------
function Module:_get_name() return class.typename(self) or 'Module' end
function Module:extra_repr() return '' end

local function addindent(s, n)
  local lines = {}
  for line in (s .. '\n'):gmatch('(.-)\n') do lines[#lines + 1] = line end
  if #lines == 1 then return s end
  local pad = string.rep(' ', n)
  for i = 2, #lines do lines[i] = pad .. lines[i] end
  return table.concat(lines, '\n')
end
Module.addindent = addindent

-- tostring(m): PyTorch's module tree printout
function Module:__repr()
  local extra = self:extra_repr()
  local extra_lines = {}
  if extra ~= nil and extra ~= '' then
    for line in (extra .. '\n'):gmatch('(.-)\n') do extra_lines[#extra_lines + 1] = line end
  end
  local child_lines = {}
  for n, c in self:named_children() do
    child_lines[#child_lines + 1] = '(' .. n .. '): ' .. addindent(c:__repr(), 2)
  end
  local s = self:_get_name() .. '('
  if #extra_lines + #child_lines > 0 then
    if #extra_lines == 1 and #child_lines == 0 then
      s = s .. extra_lines[1]
    else
      local lines = {}
      for _, l in ipairs(extra_lines) do lines[#lines + 1] = l end
      for _, l in ipairs(child_lines) do lines[#lines + 1] = l end
      s = s .. '\n  ' .. table.concat(lines, '\n  ') .. '\n'
    end
  end
  return s .. ')'
end
Module.__tostring = function(self) return self:__repr() end

Module.repr = R
return Module
