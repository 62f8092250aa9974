-- pipelines/lua_file.lua: components written as Lua files (a label net, a noise scheduler) that a
-- run names on the command line (--label-net FILE.lua, --scheduler FILE.lua) and a checkpoint
-- keeps a copy of, so the pipeline can be rebuilt later without the original file.
--
-- A component file is an ordinary Lua chunk run with the global table behind it and `ddpm`
-- defined; it returns the component or a function that builds it.  Its globals land in a table of
-- its own, so a file cannot clobber the caller's.  Loading a checkpoint that holds such a copy runs
-- that Lua (as torch.load runs pickled code): load only checkpoints you trust.
local raise = require('ddpm.ffi').raise

local M = {}

-- component -> {source=, path=, args={...}}: which file built a component and with what arguments,
-- so save_pretrained can store the source and a copy of the component can be built the same way
M.origin = setmetatable({}, { __mode = 'k' })

local function read(path)
  local f, err = io.open(path, 'rb')
  if not f then return nil, err end
  local s = f:read('*a')
  f:close()
  return s
end
M.read = read

-- run(source, chunkname, what) -> the chunk's first return value; errors name `what`
function M.run(source, chunkname, what)
  local chunk, err = loadstring(source, '@' .. chunkname)
  if not chunk then raise(string.format('%s: %s does not compile: %s', what, chunkname, tostring(err))) end
  local env = setmetatable({ ddpm = require 'ddpm' }, { __index = _G })
  setfenv(chunk, env)
  local ok, res = pcall(chunk)
  if not ok then raise(string.format('%s: running %s failed: %s', what, chunkname, tostring(res))) end
  if res == nil then
    raise(string.format('%s: %s returned nothing; it must end with `return <the component>` or `return function(...) ... end`',
      what, chunkname))
  end
  return res
end

-- load(path, what) -> value the file returns, its source text
function M.load(path, what)
  if type(path) ~= 'string' or path == '' then raise(what .. ': expected the path of a .lua file') end
  local src, err = read(path)
  if not src then raise(string.format("%s: cannot read '%s': %s", what, path, tostring(err))) end
  return M.run(src, path, what), src
end

-- call(value, args, what): a function is called with args (a builder); anything else is returned
function M.call(value, args, what, chunkname)
  if type(value) ~= 'function' then return value end
  local ok, res = pcall(value, unpack(args, 1, args.n or #args))
  if not ok then raise(string.format('%s: the function %s returned failed: %s', what, chunkname, tostring(res))) end
  if res == nil then raise(string.format('%s: the function %s returned gave nothing back', what, chunkname)) end
  return res
end

-- build(source, chunkname, args, what) -> component, remembered with its origin
local function deep_copy(v)
  if type(v) ~= 'table' then return v end
  local r = {}
  for k, x in pairs(v) do r[k] = deep_copy(x) end
  return r
end

function M.build(source, chunkname, args, what, path)
  local v = M.run(source, chunkname, what)
  -- the arguments as given: a builder that edits its config table must not change the record
  local record = deep_copy(args)
  local c = M.call(v, args, what, chunkname)
  if type(c) == 'table' then M.origin[c] = { source = source, path = path or chunkname, args = record } end
  return c
end

-- check_scheduler(s, what): the methods training and sampling call, and a config that says how many
-- noise levels it has; a trial add_noise and set_timesteps run on a tiny batch
function M.check_scheduler(s, what)
  local ddpm = require 'ddpm'
  if type(s) ~= 'table' then
    raise(string.format('%s: expected a scheduler (a table with config, add_noise, set_timesteps, step), got a %s', what, type(s)))
  end
  for _, m in ipairs({ 'add_noise', 'set_timesteps', 'step', 'scale_model_input', 'timestep_list' }) do
    if type(s[m]) ~= 'function' then
      raise(string.format('%s: the scheduler has no method %s; a scheduler needs config, add_noise, set_timesteps, step, '
        .. 'scale_model_input, timestep_list and init_noise_sigma (ddpm.schedulers.base.class provides the plumbing)', what, m))
    end
  end
  local T = type(s.config) == 'table' and s.config.num_train_timesteps
  if type(T) ~= 'number' or T < 1 or T ~= math.floor(T) then
    raise(string.format('%s: the scheduler needs config.num_train_timesteps (a positive integer), got %s', what, tostring(T)))
  end
  local ok, err = pcall(function()
    local x = ddpm.zeros(1, 1, 2, 2)
    local y = s:add_noise(x, ddpm.ones(1, 1, 2, 2), ddpm.tensor({ T - 1 }, { dtype = ddpm.int64 }))
    assert(require('ddpm.tensor').is_tensor(y), 'add_noise returned a ' .. type(y) .. ', not a tensor')
    s:set_timesteps(math.min(2, T))
    assert(type(s:timestep_list()) == 'table', 'timestep_list() must return a list of timesteps')
    assert(type(s.init_noise_sigma) == 'number', 'init_noise_sigma must be a number (1 for DDPM/DDIM)')
  end)
  if not ok then raise(string.format('%s: a trial add_noise/set_timesteps failed: %s', what, tostring(err))) end
  -- base.class caches timestep_list(); a user set_timesteps may not reset it: drop the trial's
  if type(s) == 'table' then rawset(s, '_tlist', nil) end
  return s
end

-- scheduler(path, config, what) -> a scheduler from a Lua file returning a scheduler or a
-- function(config) -> scheduler; config is a diffusers scheduler config table (a copy)
function M.scheduler(path, config, what)
  what = what or 'scheduler'
  local src, err = read(path)
  if not src then raise(string.format("%s: cannot read '%s': %s", what, path, tostring(err))) end
  local cfg = {}
  for k, v in pairs(config or {}) do cfg[k] = v end
  return M.check_scheduler(M.build(src, path, { cfg }, what, path), what)
end

function M.is_lua_path(s)
  return type(s) == 'string' and s:match('%.lua$') ~= nil
end

return M
