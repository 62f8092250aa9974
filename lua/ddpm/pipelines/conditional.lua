-- pipelines/conditional.lua: ConditionalDDPMPipeline, class-conditional sampling of the tutorial's
-- model: a label net turns one-hot labels into the UNet's encoder_hidden_states.
--
--   local pipe = ddpm.pipelines.ConditionalDDPMPipeline(unet, class_net, scheduler)
--   local out = pipe({{1,0,0,0,0}, {0,0,0,1,0}}, {generator = 0, num_inference_steps = 50,
--                    guidance_scale = 2})
--   out.images      -- float [2, 3, 16, 16] in [0, 1]
--
-- Labels: a list of one-hot rows, a list of class ids, a float [B, classes] tensor or an integer
-- [B] tensor of class ids.  guidance_scale > 1 is classifier-free guidance: the all-zero label is
-- the unconditional input (train with label dropout, --label-dropout, for it to mean "any class"),
-- and the conditional and unconditional passes run as one batch of 2B.
local ddpm = require 'ddpm'
local T = require 'ddpm.tensor'
local base = require 'ddpm.pipelines.base'
local label_net = require 'ddpm.pipelines.label_net'
local raise = require('ddpm.ffi').raise

local Pipe = {}
Pipe.__index = Pipe
Pipe.name = 'ConditionalDDPMPipeline'

local ALLOWED = { guidance_scale = true }
for k in pairs(base.COMMON_OPTS) do ALLOWED[k] = true end

function Pipe.new(unet, class_net, scheduler, extra)
  local who = 'ConditionalDDPMPipeline'
  if type(unet) ~= 'table' or type(unet.forward) ~= 'function' then raise(who .. ': unet must be a model (UNet2DConditionModel)') end
  if type(class_net) ~= 'table' or type(class_net.forward) ~= 'function' then
    raise(who .. ': class_net must be a module mapping labels [B, classes] to encoder_hidden_states [B, tokens, dim]')
  end
  if type(scheduler) ~= 'table' or type(scheduler.step) ~= 'function' or type(scheduler.set_timesteps) ~= 'function' then
    raise(who .. ': scheduler must be a ddpm.schedulers scheduler (set_timesteps, step)')
  end
  extra = extra or {}
  local self = setmetatable({ unet = unet, class_net = class_net, scheduler = scheduler,
    class_names = extra.class_names, num_classes = extra.num_classes or label_net.input_width(class_net) }, Pipe)
  return self
end

-- labels in any accepted form -> float [B, classes] on the model's device
function Pipe:prepare_labels(labels)
  local who = self.name
  local dev, dtype = base.module_device(self.class_net)
  local k = self.num_classes
  local t
  if T.is_tensor(labels) then
    t = labels
  elseif type(labels) == 'table' and #labels > 0 then
    if type(labels[1]) == 'number' then
      t = ddpm.tensor(labels, { dtype = ddpm.int64 })
    else
      for i, row in ipairs(labels) do
        if type(row) ~= 'table' then raise(string.format('%s: labels[%d] is a %s; expected one-hot rows such as {0, 1, 0, 0, 0}',
          who, i, type(row))) end
        if #row ~= #labels[1] then raise(string.format('%s: labels[%d] has %d values but labels[1] has %d', who, i, #row,
          #labels[1])) end
      end
      t = ddpm.tensor(labels)
    end
  else
    raise(who .. ': labels must be a non-empty list of one-hot rows (or class ids) or a tensor [B, classes] / [B]')
  end
  if t:dim() == 1 and not t:is_floating_point() then
    if not k then raise(who .. ': class ids need the number of classes; pass one-hot rows instead') end
    local lo, hi = t:min():item(), t:max():item()
    if lo < 0 or hi >= k then
      raise(string.format('%s: class id %d is out of range; the label net knows %d classes (0..%d)', who, lo < 0 and lo or hi, k, k - 1))
    end
    t = ddpm.eye(k, k, {}):index_select(0, t:long())
  end
  if t:dim() ~= 2 then
    raise(string.format('%s: labels must be [B, classes] (one-hot rows) or [B] class ids, got shape [%s]', who,
      table.concat(t:shape(), ', ')))
  end
  if k and t:size(1) ~= k then
    raise(string.format('%s: labels have %d columns but the label net takes %d (one column per class)', who, t:size(1), k))
  end
  return t:to(dtype, dev)
end

-- pipe(labels, {generator=, num_inference_steps=, guidance_scale=1, eta=0, output_type='tensor',
--   callback=function(i, t, sample), callback_steps=1, progress=true, latents=, path=, nrow=, scale=})
-- -> {images = ..., labels = float [B, classes]}
function Pipe:__call(labels, opts)
  local who = self.name
  opts = base.check_opts(opts, who, ALLOWED)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.generator = base.generator(opts.generator, who)
  local gs = opts.guidance_scale or 1
  if type(gs) ~= 'number' or gs ~= gs then raise(who .. ': guidance_scale must be a number, got ' .. tostring(gs)) end
  local lab = self:prepare_labels(labels)
  local B = lab:size(0)
  local images = base.run_eval({ self.unet, self.class_net }, function()
    local guided = gs > 1
    -- the label embedding does not depend on the step: computed once
    local ehs
    if guided then
      ehs = self.class_net(ddpm.cat({ lab, ddpm.zeros_like(lab) }, 0))
    else
      ehs = self.class_net(lab)
    end
    if not T.is_tensor(ehs) or ehs:dim() ~= 3 then
      raise(string.format('%s: the label net must return encoder_hidden_states [B, tokens, dim]; got %s', who,
        T.is_tensor(ehs) and ('shape [' .. table.concat(ehs:shape(), ', ') .. ']') or type(ehs)))
    end
    local x = base.initial_noise(self, B, o)
    local function predict(inp, t)
      if not guided then return self.unet(inp, t, ehs).sample end
      local eps = self.unet(ddpm.cat({ inp, inp }, 0), t, ehs).sample
      local cond, uncond = eps:narrow(0, 0, B), eps:narrow(0, B, B)
      return uncond + (cond - uncond) * gs
    end
    x = base.denoise(self, x, o, predict)
    return base.output(x, o, who)
  end)
  return { images = images, labels = lab }
end

function Pipe:to(device)
  self.unet:to(device)
  self.class_net:to(device)
  return self
end

Pipe.device = function(self) return (base.module_device(self.unet)) end

-- save_pretrained(dir): unet/, scheduler/, class_net.{safetensors,json}, model_index.json
function Pipe:save_pretrained(dir)
  require('ddpm.pipelines.loading').save(self, dir)
end

local M = {}
M.ConditionalDDPMPipeline = setmetatable({ new = Pipe.new, class = Pipe }, {
  __call = function(_, ...) return Pipe.new(...) end,
})
M.Pipe = Pipe
return M
