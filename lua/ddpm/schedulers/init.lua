-- ddpm.schedulers (≈ diffusers.schedulers): noise schedulers with one interface, so a script
-- swaps DDPM for DDIM (or any other) by changing one line:
--   local s = ddpm.schedulers.DDIMScheduler.from_config(ddpm_scheduler.config)
-- Registry: get(name) finds a class by its diffusers class name or a short alias; load(dir)
-- rebuilds the scheduler a scheduler_config.json describes; register(name, cls) adds your own.
local raise = require('ddpm.ffi').raise

local M = {}

-- class name -> module; classes load on first use
local modules = {
  DDPMScheduler = 'ddpm.schedulers.ddpm',
  DDIMScheduler = 'ddpm.schedulers.ddim',
  DPMSolverMultistepScheduler = 'ddpm.schedulers.dpmsolver_multistep',
  EulerAncestralDiscreteScheduler = 'ddpm.schedulers.euler_ancestral_discrete',
}
local aliases = {
  ddpm = 'DDPMScheduler',
  ddim = 'DDIMScheduler',
  dpmsolver = 'DPMSolverMultistepScheduler',
  ['dpmsolver++'] = 'DPMSolverMultistepScheduler',
  dpm = 'DPMSolverMultistepScheduler',
  dpmsolver_multistep = 'DPMSolverMultistepScheduler',
  euler_a = 'EulerAncestralDiscreteScheduler',
  euler_ancestral = 'EulerAncestralDiscreteScheduler',
}
local registered = {}

local function names()
  local r = {}
  for k in pairs(modules) do r[#r + 1] = k end
  for k in pairs(registered) do if not modules[k] then r[#r + 1] = k end end
  table.sort(r)
  return r
end

-- get(name): the scheduler class for 'DDIMScheduler', 'ddim', 'dpmsolver++', 'euler_a', ...
function M.get(name)
  if type(name) ~= 'string' then raise('schedulers.get: expected a scheduler name, got ' .. type(name)) end
  local cname = aliases[name] or aliases[name:lower()] or name
  if registered[cname] then return registered[cname] end
  local mod = modules[cname]
  if not mod then
    local a = {}
    for k in pairs(aliases) do a[#a + 1] = k end
    table.sort(a)
    raise(string.format("schedulers.get: unknown scheduler '%s'; expected one of %s (or the aliases %s)", name,
      table.concat(names(), ', '), table.concat(a, ', ')))
  end
  return require(mod)
end

-- register(name, cls): make a user scheduler reachable by get() and load()
function M.register(name, cls)
  if type(name) ~= 'string' or type(cls) ~= 'table' then
    raise('schedulers.register: expected (name, scheduler class)')
  end
  registered[name] = cls
end

-- load(dir_or_json, {subfolder=, class=}): build the scheduler a scheduler_config.json names
-- (its _class_name), from a scheduler directory, a pipeline directory or the .json file.
function M.load(path, opts)
  if type(path) ~= 'string' then raise('schedulers.load: expected a directory or a .json path, got ' .. type(path)) end
  opts = opts or {}
  local base = require 'ddpm.schedulers.base'
  local cfg, where = base.read_config(path, opts.subfolder)
  local cname = opts.class or cfg._class_name
  if type(cname) ~= 'string' then
    raise(string.format("schedulers.load: %s has no _class_name; pass {class='DDPMScheduler'}", where))
  end
  local ok, cls = pcall(M.get, cname)
  if not ok then
    raise(string.format("schedulers.load: %s names the scheduler '%s', which ddpm-lua does not have; expected one of %s",
      where, cname, table.concat(names(), ', ')))
  end
  return cls.from_config(cfg)
end

M.names = names

setmetatable(M, {
  __index = function(t, k)
    local mod = modules[k]
    if mod then
      local cls = require(mod)
      rawset(t, k, cls)
      return cls
    end
    return nil
  end,
})

return M
