-- training/checkpoint.lua: a training run's checkpoint, the directory RUN/checkpoint:
--   the pipeline in diffusers' layout (unet/, scheduler/, class_net.*, model_index.json; see
--   ddpm.pipelines.loading) + training_state.safetensors (optimizer, data-loader position, random
--   generators, step/epoch, the run's options), written last: its presence marks a complete one.
-- A save writes a new directory beside the old one and swaps the two in one atomic rename
-- (renameat2 RENAME_EXCHANGE; two renames where that is unsupported), so an interrupted or failed
-- save never damages the previous checkpoint.
local ddpm = require 'ddpm'
local fs = require 'ddpm.training.fs'
local raise = require('ddpm.ffi').raise

local M = {}

M.DIR_NAME = 'checkpoint'
M.STATE_NAME = 'training_state.safetensors'
M.FORMAT = 'ddpm-lua.training/1'

local NEW_PREFIX, OLD_PREFIX = '.checkpoint.new-', '.checkpoint.old-'

local function complete(dir) return fs.exists(dir .. '/' .. M.STATE_NAME) end

-- leftovers of saves that stopped half-way (ours or an earlier process's)
local function leftovers(run_dir, prefix)
  local r = {}
  if not fs.is_dir(run_dir) then return r end
  for _, e in ipairs(fs.list(run_dir)) do
    if e.name:sub(1, #prefix) == prefix then r[#r + 1] = run_dir .. '/' .. e.name end
  end
  table.sort(r)
  return r
end

-- A save stopped between its two renames leaves no RUN/checkpoint but a complete .checkpoint.old-*:
-- put it back.
local function recover(run_dir)
  local final = run_dir .. '/' .. M.DIR_NAME
  if complete(final) then return end
  for _, old in ipairs(leftovers(run_dir, OLD_PREFIX)) do
    if complete(old) then
      if fs.exists(final) then fs.remove_tree(final) end
      fs.rename(old, final)
      return
    end
  end
end

-- find(path) -> the checkpoint directory for a run directory or a checkpoint directory, or nil and
-- the reason
function M.find(path)
  if type(path) ~= 'string' or path == '' then return nil, 'expected a directory path' end
  path = path:gsub('(.)/+$', '%1')
  if not fs.is_dir(path) then return nil, string.format("'%s' does not exist or is not a directory", path) end
  if complete(path) then return path end
  recover(path)
  local inner = path .. '/' .. M.DIR_NAME
  if complete(inner) then return inner end
  return nil, string.format("'%s' holds no checkpoint (expected %s/%s, written by a training run's --out)", path,
    M.DIR_NAME, M.STATE_NAME)
end

-- the run directory a checkpoint directory belongs to
function M.run_dir_of(ckpt_dir)
  if fs.basename(ckpt_dir) == M.DIR_NAME then return fs.dirname(ckpt_dir) end
  return ckpt_dir
end

-- save(run_dir, write(dir)): write(dir) fills a fresh directory (the training state last); it then
-- replaces RUN/checkpoint atomically.  Returns the checkpoint path.
function M.save(run_dir, write)
  fs.mkdirs(run_dir)
  for _, d in ipairs(leftovers(run_dir, NEW_PREFIX)) do fs.remove_tree(d) end
  local tmp = string.format('%s/%s%d', run_dir, NEW_PREFIX, fs.pid())
  fs.mkdirs(tmp)
  write(tmp)
  if not complete(tmp) then raise('checkpoint: the writer did not write ' .. M.STATE_NAME) end
  local final = run_dir .. '/' .. M.DIR_NAME
  if fs.is_dir(final) then
    if fs.exchange(tmp, final) then
      fs.remove_tree(tmp) -- now the previous checkpoint
    else
      local old = string.format('%s/%s%d', run_dir, OLD_PREFIX, fs.pid())
      fs.remove_tree(old)
      fs.rename(final, old)
      fs.rename(tmp, final)
      fs.remove_tree(old)
    end
  else
    fs.rename(tmp, final)
  end
  for _, d in ipairs(leftovers(run_dir, OLD_PREFIX)) do fs.remove_tree(d) end
  return final
end

function M.write_state(dir, state)
  state.format = M.FORMAT
  ddpm.save(state, dir .. '/' .. M.STATE_NAME)
end

function M.read_state(ckpt_dir)
  local path = ckpt_dir .. '/' .. M.STATE_NAME
  local ok, state = pcall(ddpm.load, path)
  if not ok then
    raise(string.format("checkpoint '%s' cannot be read: %s", ckpt_dir, tostring(state):gsub('^.-:%d+: ', '')))
  end
  if type(state) ~= 'table' or state.format ~= M.FORMAT then
    raise(string.format("checkpoint '%s': %s is not a ddpm-lua training state (format %s)", ckpt_dir, M.STATE_NAME,
      tostring(type(state) == 'table' and state.format)))
  end
  return state
end

return M
