-- models/modeling.lua: what diffusers' ModelMixin + ConfigMixin give a model class: building
-- from a config table or config.json (from_config), save_pretrained / from_pretrained in the
-- diffusers file layout (config.json + diffusion_pytorch_model.safetensors), and the config.
local ffi = require 'ffi'
local C = require 'ddpm.models.configuration'
local ddpm = require 'ddpm'
local raise = require('ddpm.ffi').raise

local M = {}

M.CONFIG_NAME = 'config.json'
M.WEIGHTS_NAME = 'diffusion_pytorch_model.safetensors'

pcall(ffi.cdef, 'int mkdir(const char *path, unsigned int mode);')
local function isdir(path)
  local f = io.open(path .. '/.', 'r')
  if f then f:close() return true end
  return false
end
local function mkdirs(path)
  local acc = path:sub(1, 1) == '/' and '' or nil
  for part in path:gmatch('[^/]+') do
    acc = acc and (acc .. '/' .. part) or part
    if not isdir(acc) then
      if ffi.C.mkdir(acc, 493) ~= 0 and not isdir(acc) then raise('save_pretrained: cannot create directory ' .. acc) end
    end
  end
end
local function exists(path)
  local f = io.open(path, 'rb')
  if f then f:close() return true end
  return false
end


-- install(cls, schema): gives a model class config handling and the diffusers file layout.
-- The class constructor must accept (config_table, {generator=, dtype=, device=}) and set
-- self.config to the resolved config.
function M.install(cls, schema)
  local name = cls.__name
  cls.config_schema = schema

  -- resolve_config(tbl): defaults filled in, names and values checked
  function cls.resolve_config(tbl) return C.resolve(schema, tbl, name) end

  -- from_config(tbl | 'path/config.json' | 'dir', opts): a model with fresh weights
  function cls.from_config(src, opts)
    if type(src) == 'string' then
      local path = src
      if isdir(path) then path = path .. '/' .. M.CONFIG_NAME end
      src = C.read_json(path)
    elseif type(src) ~= 'table' then
      raise(name .. '.from_config: expected a config table or a path to config.json, got ' .. type(src))
    end
    return cls(src, opts)
  end

  -- load_config(dir_or_path) -> the config table as stored (without '_' keys; JSON nulls are
  -- ddpm.models.None, so the table rebuilds the same model)
  function cls.load_config(src)
    local path = isdir(src) and (src .. '/' .. M.CONFIG_NAME) or src
    local raw = C.read_json(path)
    local out = {}
    for k, v in pairs(raw) do if k:sub(1, 1) ~= '_' then out[k] = v end end
    return out
  end

  -- from_pretrained(dir, {subfolder=, dtype=, device=}): config.json + safetensors weights
  function cls.from_pretrained(dir, opts)
    opts = opts or {}
    if type(dir) ~= 'string' then raise(name .. '.from_pretrained: expected a directory path, got ' .. type(dir)) end
    if opts.subfolder then dir = dir .. '/' .. opts.subfolder end
    local cfg_path = dir .. '/' .. M.CONFIG_NAME
    if not exists(cfg_path) then
      raise(string.format('%s.from_pretrained: no %s in %s (expected the diffusers layout: %s and %s)', name,
        M.CONFIG_NAME, dir, M.CONFIG_NAME, M.WEIGHTS_NAME))
    end
    local raw = C.read_json(cfg_path)
    if raw._class_name and raw._class_name ~= name then
      raise(string.format('%s.from_pretrained: %s describes a %s', name, cfg_path, tostring(raw._class_name)))
    end
    local model = cls(raw, { dtype = opts.dtype, device = opts.device })
    local wpath = dir .. '/' .. M.WEIGHTS_NAME
    if not exists(wpath) then
      raise(string.format('%s.from_pretrained: no %s in %s (only safetensors weights are supported)', name,
        M.WEIGHTS_NAME, dir))
    end
    local sd = ddpm.load_safetensors(wpath)
    model:load_state_dict(sd, { strict = true })
    model:eval()
    return model
  end

  -- save_pretrained(dir): config.json and diffusion_pytorch_model.safetensors, each written
  -- to a temporary file and renamed into place
  function cls:save_pretrained(dir)
    if type(dir) ~= 'string' then raise(name .. ':save_pretrained: expected a directory path, got ' .. type(dir)) end
    mkdirs(dir)
    ddpm.save_safetensors(dir .. '/' .. M.WEIGHTS_NAME, self:state_dict(), { format = 'pt' })
    ddpm.io.write_file_atomic(dir .. '/' .. M.CONFIG_NAME, C.to_json_string(schema, self.config, name))
  end

  -- the config as diffusers would write it (a JSON string)
  function cls:to_json_string() return C.to_json_string(schema, self.config, name) end
end

return M
