-- class.lua: a small single-inheritance class system: `local Linear = class('Linear', Module)`,
-- `function Linear:__init(...) end`, `Linear(...)` builds an instance.
-- Metamethods (__call, __tostring, __newindex, ...) are copied from the parent when a class is
-- made, because Lua looks metamethods up with rawget on the metatable, never through __index.
local M = {}

local metamethods = { '__call', '__tostring', '__newindex', '__len', '__eq', '__concat', '__unm', '__add', '__sub',
  '__mul', '__div' }

-- new instance: the class is the instance's metatable
local function instantiate(cls, ...)
  local obj = setmetatable({}, cls)
  local init = cls.__init
  if init then init(obj, ...) end
  return obj
end

-- class(name[, parent]) -> cls.  cls(...) creates an instance and calls cls.__init(self, ...).
function M.class(name, parent)
  if type(name) ~= 'string' then error('class: expected a class name (string) as first argument', 2) end
  local cls = { __name = name, __parent = parent }
  cls.__index = cls
  if parent then
    for _, mm in ipairs(metamethods) do
      local f = rawget(parent, mm)
      if f ~= nil then cls[mm] = f end
    end
  end
  -- the class table's own metatable: method lookup falls back to the parent; calling builds
  setmetatable(cls, {
    __index = parent,
    __call = instantiate,
    __tostring = function() return 'class ' .. name end,
  })
  return cls
end

-- isinstance(obj, cls): is obj an instance of cls or of a class derived from it?
function M.isinstance(obj, cls)
  if type(obj) ~= 'table' then return false end
  local c = getmetatable(obj)
  while type(c) == 'table' do
    if c == cls then return true end
    c = rawget(c, '__parent')
  end
  return false
end

-- name of an instance's class (nil for non-instances)
function M.typename(obj)
  local c = type(obj) == 'table' and getmetatable(obj)
  return type(c) == 'table' and rawget(c, '__name') or nil
end

setmetatable(M, { __call = function(_, ...) return M.class(...) end })
return M
