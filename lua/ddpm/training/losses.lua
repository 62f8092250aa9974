-- training/losses.lua: the diffusion training loss, pluggable.  The tutorial's is the MSE between the
-- predicted and the true noise; a name picks another torch loss, or pass your own
-- function(pred, target, batch) -> scalar tensor (batch = {images=, labels=, timesteps=, noise=}).
local F = require 'ddpm.nn.functional'
local raise = require('ddpm.ffi').raise

local M = {}

M.by_name = {
  mse = function(pred, target) return F.mse_loss(pred, target) end,
  l1 = function(pred, target) return F.l1_loss(pred, target) end,
  huber = function(pred, target) return F.huber_loss(pred, target) end,
  smooth_l1 = function(pred, target) return F.smooth_l1_loss(pred, target) end,
}
M.names = { 'mse', 'l1', 'huber', 'smooth_l1' }

function M.get(loss)
  if loss == nil then return M.by_name.mse end
  if type(loss) == 'function' then return loss end
  local f = M.by_name[loss]
  if not f then
    raise(string.format("training: unknown loss '%s'; expected one of %s or a function(pred, target, batch)", tostring(loss),
      table.concat(M.names, ', ')))
  end
  return f
end

-- min_snr(scheduler, gamma): the MSE weighted per sample by min(SNR(t), gamma) / SNR(t) (Min-SNR-gamma,
-- Hang et al. 2023; diffusers' train scripts' --snr_gamma): less weight on the nearly clean
-- timesteps, so training spends its effort on the noisy ones that decide the global shape
function M.min_snr(scheduler, gamma)
  local ddpm = require 'ddpm'
  local pt = scheduler.config.prediction_type or 'epsilon'
  return function(pred, target, batch)
    local a = require('ddpm.schedulers.base').acp_on(scheduler, pred):index_select(0, batch.timesteps)
    local snr = a / (1 - a)
    local w = ddpm.minimum(snr, ddpm.full({}, gamma, { dtype = snr.dtype, device = snr.device }))
    if pt == 'epsilon' then w = w / snr elseif pt == 'v_prediction' then w = w / (snr + 1) end
    local per_sample = F.mse_loss(pred, target, 'none'):reshape(pred:size(0), -1):mean(1)
    return (per_sample * w):mean()
  end
end

-- what the UNet learns to predict, by the noise scheduler's prediction_type (as diffusers'
-- train_unconditional.py): the noise, the clean image, or the velocity
function M.target(scheduler, images, noise, timesteps)
  local pt = scheduler.config.prediction_type or 'epsilon'
  if pt == 'epsilon' then return noise end
  if pt == 'sample' then return images end
  if pt == 'v_prediction' then return scheduler:get_velocity(images, noise, timesteps) end
  raise(string.format("training: unknown prediction_type '%s'", tostring(pt)))
end

return M
