-- nn/container.lua: Sequential, ModuleList and ModuleDict.  Sequential and ModuleList keep their
-- children in the array part (seq[1] is child "0", #seq and ipairs work); names and state-dict
-- keys are 0-based as in PyTorch ("0.weight", "resnets.1.conv1.weight").
local class = require 'ddpm.class'
local Module = require 'ddpm.nn.module'
local R = require 'ddpm.nn.pyrepr'
local raise = require('ddpm.ffi').raise

local M = {}

local function need_module(owner, i, m)
  if not Module.is_module(m) then
    raise(string.format('%s: element %s is %s, expected an nn.Module', owner, tostring(i), type(m)))
  end
end

local function append(self, owner, m)
  need_module(owner, #self + 1, m)
  local i = #self + 1
  self:add_module(tostring(i - 1), m, i)
  return self
end

-- ---- Sequential(m1, m2, ...) | Sequential({m1, m2, ...}) | Sequential({{'name', m}, ...}) ----
local Sequential = class('Sequential', Module)
function Sequential:__init(...)
  Module.__init(self)
  local first = ...
  local list = { ... }
  if select('#', ...) == 1 and type(first) == 'table' and not Module.is_module(first) then list = first end
  for i, m in ipairs(list) do
    if type(m) == 'table' and not Module.is_module(m) and type(m[1]) == 'string' then
      need_module('Sequential', m[1], m[2])
      self:add_module(m[1], m[2])
      rawset(self, i, m[2])
    else
      append(self, 'Sequential', m)
    end
  end
end
function Sequential:append(m) return append(self, 'Sequential.append', m) end
function Sequential:forward(x, ...)
  for i = 1, #self do x = self[i](x, ...) end
  return x
end
M.Sequential = Sequential

-- ---- ModuleList({m1, m2, ...}) ----
local ModuleList = class('ModuleList', Module)
function ModuleList:__init(list)
  Module.__init(self)
  if list ~= nil and type(list) ~= 'table' then raise('ModuleList: expected a table of modules, got ' .. type(list)) end
  for _, m in ipairs(list or {}) do append(self, 'ModuleList', m) end
end
function ModuleList:append(m) return append(self, 'ModuleList.append', m) end
function ModuleList:extend(list)
  for _, m in ipairs(list) do append(self, 'ModuleList.extend', m) end
  return self
end
function ModuleList:forward()
  raise('ModuleList has no forward: iterate over it (for _, m in ipairs(list) do ... end)')
end
-- PyTorch folds runs of identical children: (0-1): 2 x ResnetBlock2D(...)
function ModuleList:__repr()
  local reprs = {}
  for i = 1, #self do reprs[i] = self[i]:__repr() end
  if #reprs == 0 then return self:_get_name() .. '()' end
  local groups = { { 0, 0, reprs[1] } }
  for i = 2, #reprs do
    local g = groups[#groups]
    if reprs[i] == g[3] then g[2] = i - 1 else groups[#groups + 1] = { i - 1, i - 1, reprs[i] } end
  end
  local lines = {}
  for _, g in ipairs(groups) do
    local s
    if g[1] == g[2] then s = string.format('(%d): %s', g[1], g[3])
    else s = string.format('(%d-%d): %d x %s', g[1], g[2], g[2] - g[1] + 1, g[3]) end
    lines[#lines + 1] = Module.addindent(s, 2)
  end
  return self:_get_name() .. '(\n  ' .. table.concat(lines, '\n  ') .. '\n)'
end
M.ModuleList = ModuleList

-- ---- ModuleDict({name = m, ...}) (sorted by name) | ModuleDict({{'name', m}, ...}) ----
local ModuleDict = class('ModuleDict', Module)
function ModuleDict:__init(tbl)
  Module.__init(self)
  tbl = tbl or {}
  if #tbl > 0 then
    for _, e in ipairs(tbl) do
      need_module('ModuleDict', e[1], e[2])
      self:add_module(e[1], e[2])
    end
  else
    local keys = {}
    for k in pairs(tbl) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      need_module('ModuleDict', k, tbl[k])
      self:add_module(k, tbl[k])
    end
  end
end
function ModuleDict:keys()
  local out = {}
  for n in self:named_children() do out[#out + 1] = n end
  return out
end
function ModuleDict:items() return self:named_children() end
M.ModuleDict = ModuleDict

M._repr = R
return M
