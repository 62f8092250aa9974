-- utils/cuda_graphs.lua: run a repeated step as a CUDA graph (ddpm.cuda.graph) when it can be, eagerly
-- when it cannot; used by the sampling pipelines (the model call of every denoising step) and the
-- trainer (zero_grad + forward + loss + backward of a training step).
--
-- The pattern is PyTorch's (torch.cuda.graphs docs): the first call with a given shape runs eagerly
-- (cuDNN picks and caches its algorithms, lazily made buffers and .grad tensors come into being),
-- the second captures the step over static input tensors and replays it, later ones copy their
-- inputs into the static tensors and replay.  A capture that fails (an op that syncs or copies from
-- the host inside the step, e.g. a custom loss calling :item()) prints one warning and the caller
-- runs eagerly from then on: graphs only ever change the speed, never the result.
local ddpm = require 'ddpm'
local raise = require('ddpm.ffi').raise

local M = {}

-- the capture function; tests swap in a host emulation (tests/lua/cuda_graphs_spec.lua) so the
-- logic around it runs on machines without a GPU
M.capture = function(fn) return ddpm.cuda.graph(fn) end

-- wanted(flag, device): graphs on? flag false: never; true or nil: on a CUDA device.  M.force (tests)
-- turns them on for any device.
function M.wanted(flag, device)
  if flag == false then return false end
  if flag ~= nil and flag ~= true then raise('cuda_graph must be true, false or nil (automatic), got ' .. tostring(flag)) end
  if M.force then return true end
  return device ~= nil and tostring(device):match('^cuda') ~= nil
end

local function warn(who, err)
  io.stderr:write(string.format('%s: CUDA graph capture failed, running eagerly: %s\n', who, tostring(err)))
end

-- predictor(predict, who) -> call(inp, t), close(): predict(model_input, t) -> model output, as a
-- replayed graph per (shape, dtype of t).  t is a number (the scheduler's timestep); in the graph it
-- is a one-element device tensor filled before each replay, which the UNet takes as it takes the
-- number (a guided predict runs the model on a doubled batch).
-- The result is a copy: multistep schedulers keep earlier model outputs, and the graph's output
-- tensor is overwritten by the next replay.
function M.predictor(predict, who)
  local seen, graphs, failed = {}, {}, false
  local function call(inp, t)
    if failed or type(t) ~= 'number' then return predict(inp, t) end
    local integral = t == math.floor(t)
    local key = table.concat(inp:shape(), 'x') .. (integral and '/i' or '/f')
    local e = graphs[key]
    if e == nil then
      if not seen[key] then
        seen[key] = true
        return predict(inp, t)
      end
      local xin = inp:clone()
      local tt = ddpm.full({ 1 }, t, { dtype = integral and ddpm.int64 or ddpm.float64, device = inp.device })
      local ok, g, out = pcall(M.capture, function() return predict(xin, tt) end)
      if not ok then
        failed = true
        warn(who, g)
        return predict(inp, t)
      end
      e = { g = g, xin = xin, tt = tt, out = out }
      graphs[key] = e
    end
    e.xin:copy_(inp)
    e.tt:fill_(t)
    e.g:replay()
    return e.out:clone()
  end
  -- free the graphs' memory pools now rather than at garbage collection
  local function close()
    for k, e in pairs(graphs) do
      if e.g.reset then pcall(e.g.reset, e.g) end
      graphs[k] = nil
    end
  end
  return call, close
end

-- step(fn, who) -> object with :run(key, inputs) and :close().  fn(static_inputs...) is the work of
-- one step and returns one tensor (the loss).  run(key, {tensors}) returns fn's result for those
-- inputs, or nil to ask the caller to run the step eagerly itself (the first time a key is seen, or
-- after a failed capture).  A new key (batch shape, label dropout, frozen parameters, loss scale)
-- drops the graphs of the others: they would hold stale gradient buffers.
local Step = {}
Step.__index = Step

function M.step(fn, who)
  return setmetatable({ fn = fn, who = who, seen = {}, current = nil, failed = false }, Step)
end

function Step:close()
  local c = self.current
  if c and c.g.reset then pcall(c.g.reset, c.g) end
  self.current = nil
end

function Step:run(key, inputs)
  if self.failed then return nil end
  local c = self.current
  if not (c and c.key == key) then
    if not self.seen[key] then
      self.seen[key] = true
      return nil
    end
    self:close()
    local statics = {}
    for i, x in ipairs(inputs) do statics[i] = x:clone() end
    local ok, g, out = pcall(M.capture, function() return self.fn(unpack(statics)) end)
    if not ok then
      self.failed = true
      warn(self.who, g)
      return nil
    end
    c = { key = key, g = g, statics = statics, out = out }
    self.current = c
  end
  for i, x in ipairs(inputs) do c.statics[i]:copy_(x) end
  c.g:replay()
  return c.out
end

return M
