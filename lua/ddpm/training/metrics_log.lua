-- training/metrics_log.lua: the per-step training log, CSV (default) or JSON Lines (a path ending
-- in .jsonl), one row per optimizer step: step, epoch, loss, lr, images_per_s.  On resume the
-- rows after the checkpoint's step (written before a crash) are dropped, so the log reads as if
-- the run had never stopped.
local json = require 'ddpm.io.json'
local raise = require('ddpm.ffi').raise

local M = {}
local Log = {}
Log.__index = Log

M.COLUMNS = { 'step', 'epoch', 'loss', 'lr', 'images_per_s' }

local function read(path)
  local f = io.open(path, 'rb')
  if not f then return nil end
  local s = f:read('*a')
  f:close()
  return s
end

-- open(path, {resume_step=n}): a fresh log, or the existing one cut back to step n
function M.open(path, opts)
  opts = opts or {}
  local jsonl = path:match('%.jsonl$') ~= nil or path:match('%.ndjson$') ~= nil
  local self = setmetatable({ path = path, jsonl = jsonl }, Log)
  local keep = {}
  if opts.resume_step then
    local old = read(path)
    if old then
      for line in old:gmatch('[^\n]+') do
        local step
        if jsonl then step = tonumber(line:match('"step":%s*(%d+)'))
        else step = tonumber(line:match('^(%d+),')) end
        if step and step <= opts.resume_step then keep[#keep + 1] = line end
      end
    end
  end
  local head = jsonl and {} or { table.concat(M.COLUMNS, ',') }
  for _, l in ipairs(keep) do head[#head + 1] = l end
  require('ddpm.io.atomic').write(path, #head > 0 and (table.concat(head, '\n') .. '\n') or '')
  local f, err = io.open(path, 'ab')
  if not f then raise(string.format("training log: cannot open '%s': %s", path, tostring(err))) end
  self.file = f
  return self
end

local function num(v)
  if v ~= v or v == math.huge or v == -math.huge then return tostring(v) end
  if v == math.floor(v) and math.abs(v) < 1e15 then return string.format('%d', v) end
  return string.format('%.8g', v)
end

-- row{step=, epoch=, loss=, lr=, images_per_s=}
function Log:row(r)
  local line
  if self.jsonl then
    local parts = {}
    for i, k in ipairs(M.COLUMNS) do
      local v = r[k]
      local finite = v ~= nil and v == v and v ~= math.huge and v ~= -math.huge
      parts[i] = json.string(k) .. ': ' .. (finite and num(v) or 'null') -- JSON has no NaN
    end
    line = '{' .. table.concat(parts, ', ') .. '}'
  else
    local parts = {}
    for i, k in ipairs(M.COLUMNS) do parts[i] = r[k] ~= nil and num(r[k]) or '' end
    line = table.concat(parts, ',')
  end
  self.file:write(line, '\n')
  self.file:flush()
end

function Log:close()
  if self.file then self.file:close() end
  self.file = nil
end

return M
