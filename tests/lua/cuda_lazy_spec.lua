-- cuda_lazy_spec.lua: a CUDA build keeps its backend in libddpm_cuda.so and maps it (with cudart,
-- cuBLAS, cuDNN) only on the first CUDA call, so CPU work starts fast and small; when the backend
-- cannot be loaded every CUDA call fails with the loader's reason and the process carries on.
local H = require 'host_run'

local ok_cfg, cfg = pcall(require, 'ddpm.build_config')
local cuda_build = ok_cfg and cfg.cuda

-- Lua code for a subprocess: does this process map a library whose name matches `pat`?
local MAPPED = [[
local function mapped(pat)
  local f = io.open('/proc/self/maps'); local s = f:read('*a'); f:close()
  return s:find(pat) ~= nil
end
]]

describe('the lazily loaded CUDA backend', function()
  if not cuda_build then
    it('is part of a CUDA build only', function() pending('this is a CPU-only build') end)
    return
  end

  it('is not mapped by CPU work, and is by the first CUDA query', function()
    local r = H.run('-e ' .. H.q(MAPPED .. [[
local x = ddpm.randn(4, 4):matmul(ddpm.ones(4, 4)):sum()
print('before', mapped('libddpm_cuda'), mapped('libcudart'))
print('built', ddpm.cuda.is_built())
print('after', mapped('libddpm_cuda'), mapped('libcudart'))
]]))
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('before\tfalse\tfalse\n', r.stdout)
    assert.matches('built\ttrue\n', r.stdout)
    assert.matches('after\ttrue\ttrue\n', r.stdout)
  end)

  it('names the loader error when the backend cannot be loaded, and the process carries on', function()
    local r = H.run('-e ' .. H.q([[
print('available', ddpm.cuda.is_available(), ddpm.cuda.device_count())
local ok, e = pcall(function() return ddpm.zeros(2):to('cuda') end)
print(e)
ok, e = pcall(function() return ddpm.cuda.Stream() end)
print(e)
print('cpu still works', ddpm.ones(2):sum():item())
]]), { env = { DDPM_CUDA_LIBRARY = '/nonexistent/libddpm_cuda.so' } })
    assert.are.equal(0, r.status, r.stderr)
    assert.matches('available\tfalse\t0\n', r.stdout)
    assert.matches("to: cannot move float32%[2%] on cpu to cuda:0: the CUDA backend could not be loaded %(/nonexistent/libddpm_cuda%.so", r.stdout)
    assert.matches('CUDA is not available: the CUDA backend could not be loaded', r.stdout)
    assert.matches('cpu still works\t2\n', r.stdout)
  end)
end)
