-- pipelines/label_net.lua: saving and restoring the label-embedding net of a conditional pipeline.
-- diffusers has no class for it (the tutorial's nn.Sequential(Linear, GELU, Linear, Unsqueeze)),
-- so a checkpoint stores its state dict as class_net.safetensors (PyTorch's key names: 0.weight,
-- 2.bias, ...; torch's load_state_dict reads it) and its architecture as class_net.json, a list
-- of layers with their constructor arguments, plus the class names of the data it was trained on.
-- A label net built from a Lua file (--label-net FILE.lua) is stored as class_net.lua, a copy of
-- that file, and class_net.json {_class_name='LuaModule', file=, args=} (see pipelines/lua_file).
local ddpm = require 'ddpm'
local nn = require 'ddpm.nn'
local class = require 'ddpm.class'
local json = require 'ddpm.io.json'
local raise = require('ddpm.ffi').raise

local M = {}

M.WEIGHTS_NAME = 'class_net.safetensors'
M.CONFIG_NAME = 'class_net.json'
M.SOURCE_NAME = 'class_net.lua'
M.LUA_CLASS = 'LuaModule'
local lua_file = require 'ddpm.pipelines.lua_file'

-- layer type -> {fields saved, constructor from the saved table}
local layers = {
  Linear = { { 'in_features', 'out_features', 'bias' }, function(d) return nn.Linear(d.in_features, d.out_features, d.bias) end },
  GELU = { { 'approximate' }, function(d) return nn.GELU(d.approximate) end },
  SiLU = { {}, function() return nn.SiLU() end },
  ReLU = { {}, function() return nn.ReLU() end },
  Tanh = { {}, function() return nn.Tanh() end },
  Sigmoid = { {}, function() return nn.Sigmoid() end },
  Mish = { {}, function() return nn.Mish() end },
  Identity = { {}, function() return nn.Identity() end },
  Dropout = { { 'p' }, function(d) return nn.Dropout(d.p) end },
  Unsqueeze = { { 'dim' }, function(d) return nn.Unsqueeze(d.dim) end },
  Flatten = { { 'start_dim', 'end_dim' }, function(d) return nn.Flatten(d.start_dim, d.end_dim) end },
  LayerNorm = { { 'normalized_shape', 'eps', 'elementwise_affine' },
    function(d) return nn.LayerNorm(d.normalized_shape, { eps = d.eps, elementwise_affine = d.elementwise_affine }) end },
}

local function layer_names()
  local r = {}
  for k in pairs(layers) do r[#r + 1] = k end
  table.sort(r)
  return table.concat(r, ', ')
end

local function describe_layer(m, where)
  local name = class.typename(m)
  local spec = layers[name]
  if not spec then
    raise(string.format('label net: cannot describe %s (a %s) for a checkpoint; supported layers: Sequential of %s. '
      .. 'Save a custom label net with ddpm.save_safetensors and rebuild it yourself', where, tostring(name), layer_names()))
  end
  local d = { type = name }
  for _, f in ipairs(spec[1]) do
    local v = m[f]
    if f == 'bias' then v = m.bias ~= nil end
    d[f] = v
  end
  return d
end

-- describe(net) -> {_class_name='Sequential', layers={{type='Linear', in_features=5, ...}, ...}}
function M.describe(net)
  local origin = lua_file.origin[net]
  if origin then
    return { _class_name = M.LUA_CLASS, file = M.SOURCE_NAME, args = origin.args, origin = origin.path, source = origin.source }
  end
  local name = class.typename(net)
  if name == 'Sequential' then
    local list = {}
    for i, child in ipairs(net:children()) do list[i] = describe_layer(child, 'layer ' .. (i - 1)) end
    return { _class_name = 'Sequential', layers = list }
  end
  return { _class_name = 'Sequential', layers = { describe_layer(net, 'the label net') } }
end

-- build(description) -> a fresh module of that architecture
function M.build(desc, where)
  where = where or 'label net description'
  if type(desc) == 'table' and desc._class_name == M.LUA_CLASS then
    if type(desc.source) ~= 'string' then raise(where .. ': a LuaModule label net needs its source (' .. M.SOURCE_NAME .. ')') end
    return lua_file.build(desc.source, desc.origin or M.SOURCE_NAME, desc.args or {}, 'label net', desc.origin)
  end
  if type(desc) ~= 'table' or type(desc.layers) ~= 'table' or #desc.layers == 0 then
    raise(where .. ": expected {_class_name='Sequential', layers={{type='Linear', ...}, ...}}")
  end
  local mods = {}
  for i, d in ipairs(desc.layers) do
    local spec = type(d) == 'table' and layers[d.type]
    if not spec then
      raise(string.format("%s: layer %d has unknown type '%s'; supported: %s", where, i - 1,
        tostring(type(d) == 'table' and d.type or d), layer_names()))
    end
    local ok, m = pcall(spec[2], d)
    if not ok then raise(string.format('%s: layer %d (%s): %s', where, i - 1, d.type, tostring(m):gsub('^.-:%d+: ', ''))) end
    mods[i] = m
  end
  return nn.Sequential(unpack(mods))
end

-- the label width a net takes (its first Linear's in_features), or nil when it cannot tell
function M.input_width(net)
  if net == nil then return nil end
  local first = class.typename(net) == 'Sequential' and net:children()[1] or net
  if first ~= nil and class.typename(first) == 'Linear' then return first.in_features end
  return nil
end

-- save(dir, net, {class_names=}): class_net.safetensors + class_net.json (atomic writes)
function M.save(dir, net, extra)
  local desc = M.describe(net)
  desc._ddpm_lua = 1
  if extra and extra.class_names then desc.class_names = extra.class_names end
  if extra and extra.num_classes then desc.num_classes = extra.num_classes end
  ddpm.save_safetensors(dir .. '/' .. M.WEIGHTS_NAME, net:state_dict(), { format = 'pt' })
  if desc.source then
    require('ddpm.io.atomic').write(dir .. '/' .. M.SOURCE_NAME, desc.source)
    desc.source = nil
  end
  json.write(dir .. '/' .. M.CONFIG_NAME, desc)
end

-- load(dir) -> net (eval mode), description
function M.load(dir)
  local cpath, wpath = dir .. '/' .. M.CONFIG_NAME, dir .. '/' .. M.WEIGHTS_NAME
  local f = io.open(cpath, 'rb')
  if not f then raise(string.format("label net: no %s in '%s' (a conditional checkpoint has %s and %s)", M.CONFIG_NAME,
    dir, M.CONFIG_NAME, M.WEIGHTS_NAME)) end
  f:close()
  local desc = json.read(cpath)
  if desc._class_name == M.LUA_CLASS then
    local spath = dir .. '/' .. (desc.file or M.SOURCE_NAME)
    local src, err = lua_file.read(spath)
    if not src then raise(string.format('label net: %s names a Lua label net but %s cannot be read: %s', cpath, spath, tostring(err))) end
    desc.source, desc.origin = src, spath
  end
  local net = M.build(desc, cpath)
  local sd = ddpm.load_safetensors(wpath)
  net:load_state_dict(sd, { strict = true })
  net:eval()
  return net, desc
end

return M
