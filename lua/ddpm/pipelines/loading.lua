-- pipelines/loading.lua: pipelines on disk in diffusers' layout:
--   model_index.json                     the pipeline class and its components
--   unet/config.json + unet/diffusion_pytorch_model.safetensors   (diffusers loads these as is)
--   scheduler/scheduler_config.json
--   class_net.safetensors + class_net.json   (conditional pipelines: the label net)
--   scheduler/scheduler.lua + scheduler/ddpm_lua_scheduler.json   (a scheduler from a Lua file)
-- load(dir) also accepts a training run's output directory (its checkpoint/ sub-directory).
local ddpm = require 'ddpm'
local json = require 'ddpm.io.json'
local label_net = require 'ddpm.pipelines.label_net'
local lua_file = require 'ddpm.pipelines.lua_file'
local raise = require('ddpm.ffi').raise

local M = {}

M.INDEX_NAME = 'model_index.json'
M.DIFFUSERS_VERSION = '0.27.2'
M.SCHEDULER_SOURCE = 'scheduler.lua'
M.SCHEDULER_LUA_CONFIG = 'ddpm_lua_scheduler.json'

local function exists(path)
  local f = io.open(path, 'rb')
  if f then f:close() return true end
  return false
end

local function class_of(m) return require('ddpm.class').typename(m) end

-- save(pipe, dir): every component, each file written atomically (a training checkpoint wraps
-- this in a whole-directory swap, see ddpm.training.checkpoint)
function M.save(pipe, dir)
  if type(dir) ~= 'string' or dir == '' then raise(pipe.name .. ':save_pretrained: expected a directory path') end
  pipe.unet:save_pretrained(dir .. '/unet')
  M.save_scheduler(pipe.scheduler, dir .. '/scheduler')
  local index = {
    _class_name = pipe.name,
    _diffusers_version = M.DIFFUSERS_VERSION,
    unet = { 'diffusers', class_of(pipe.unet) },
    scheduler = { 'diffusers', pipe.scheduler.name },
  }
  if pipe.class_net then
    label_net.save(dir, pipe.class_net, { class_names = pipe.class_names, num_classes = pipe.num_classes })
    index.class_net = { 'ddpm-lua', class_of(pipe.class_net) }
  end
  json.write(dir .. '/' .. M.INDEX_NAME, index)
end

-- save_scheduler(s, dir): scheduler_config.json, and for a scheduler built by a Lua file a copy of
-- that file with the arguments it was called with
function M.save_scheduler(s, dir)
  local origin = lua_file.origin[s]
  if type(s.save_config) == 'function' then
    s:save_config(dir)
  else
    require('ddpm.training.fs').mkdirs(dir)
  end
  if origin then
    require('ddpm.io.atomic').write(dir .. '/' .. M.SCHEDULER_SOURCE, origin.source)
    json.write(dir .. '/' .. M.SCHEDULER_LUA_CONFIG, { file = M.SCHEDULER_SOURCE, args = origin.args, origin = origin.path })
  end
end

-- load_scheduler(dir): the scheduler a pipeline's scheduler/ directory describes
function M.load_scheduler(dir)
  local lpath = dir .. '/' .. M.SCHEDULER_LUA_CONFIG
  if exists(lpath) then
    local d = json.read(lpath)
    local spath = dir .. '/' .. (d.file or M.SCHEDULER_SOURCE)
    local src, err = lua_file.read(spath)
    if not src then raise(string.format('pipelines.load: %s names a Lua scheduler but %s cannot be read: %s', lpath, spath,
      tostring(err))) end
    return lua_file.build(src, spath, d.args or {}, 'scheduler', spath)
  end
  return require('ddpm.schedulers').load(dir)
end

-- the directory holding the pipeline: dir itself, or dir/checkpoint for a training run
function M.resolve(dir)
  if type(dir) ~= 'string' then raise('pipelines.load: expected a directory path, got ' .. type(dir)) end
  dir = dir:gsub('(.)/+$', '%1')
  if exists(dir .. '/unet/config.json') then return dir end
  if exists(dir .. '/checkpoint/unet/config.json') then return dir .. '/checkpoint' end
  local f = io.open(dir .. '/.', 'rb')
  if not f then raise(string.format("pipelines.load: '%s' does not exist (expected a checkpoint directory)", dir)) end
  f:close()
  raise(string.format("pipelines.load: '%s' holds no pipeline: expected unet/config.json there or in its checkpoint/ "
    .. 'sub-directory (the layout train_conditional.lua writes)', dir))
end

-- load(dir, {scheduler='ddim'|'DDIMScheduler'|scheduler, device=}) -> ConditionalDDPMPipeline | DDPMPipeline
function M.load(dir, opts)
  opts = opts or {}
  dir = M.resolve(dir)
  local index = exists(dir .. '/' .. M.INDEX_NAME) and json.read(dir .. '/' .. M.INDEX_NAME) or {}
  local ucfg = json.read(dir .. '/unet/config.json')
  local uname = ucfg._class_name or (index.unet and index.unet[2]) or 'UNet2DConditionModel'
  local models = require 'ddpm.models'
  local ucls = models[uname]
  if type(ucls) ~= 'table' or type(ucls.from_pretrained) ~= 'function' then
    raise(string.format("pipelines.load: %s/unet/config.json names the model '%s', which ddpm-lua does not have "
      .. '(UNet2DConditionModel, UNet2DModel)', dir, tostring(uname)))
  end
  local unet = ucls.from_pretrained(dir .. '/unet', { device = opts.device })
  local schedulers = require 'ddpm.schedulers'
  local sched = M.load_scheduler(dir .. '/scheduler')
  if opts.scheduler ~= nil then
    if lua_file.is_lua_path(opts.scheduler) then
      sched = lua_file.scheduler(opts.scheduler, sched.config, 'scheduler')
    elseif type(opts.scheduler) == 'string' then
      sched = schedulers.get(opts.scheduler).from_config(sched.config)
    else
      sched = opts.scheduler
    end
  end
  local conditional = exists(dir .. '/' .. label_net.CONFIG_NAME) or index.class_net ~= nil
  if conditional then
    local net, desc = label_net.load(dir)
    if opts.device then net:to(opts.device) end
    return require('ddpm.pipelines.conditional').ConditionalDDPMPipeline(unet, net, sched,
      { class_names = desc.class_names, num_classes = desc.num_classes })
  end
  return require('ddpm.pipelines.unconditional').DDPMPipeline(unet, sched)
end

return M
