-- io/npy.lua: NumPy .npy files (≈ numpy.load / numpy.save): memory-mapped loading, and saving
-- byte-identical to numpy so checksums of saved data sets can be compared with Python's.
local F = require 'ddpm.ffi'
local T = require 'ddpm.tensor'
local C = F.C
local raise = F.raise

local M = {}

local function need_path(path, op)
  if type(path) ~= 'string' then
    raise(string.format('%s: path must be a string, got %s', op, path == nil and 'nil' or type(path)))
  end
end

-- load(path, {device=}) -> tensor (uint8, int32/int64, bool, float16/32/64)
function M.load(path, opts)
  need_path(path, 'load_npy')
  local t = T.call1(C.ddpm_npy_load, path)
  if opts and opts.device then t = t:to(opts.device) end
  return t
end

-- save(path, tensor); numpy's order np.save(file, arr); (tensor, path) is accepted too
function M.save(path, t)
  if T.is_tensor(path) and type(t) == 'string' then path, t = t, path end
  need_path(path, 'save_npy')
  T.need_tensor(t, 'array', 'save_npy')
  T.check(C.ddpm_npy_save(path, t))
end

return M
