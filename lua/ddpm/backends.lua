-- backends.lua: ddpm.backends (≈ torch.backends): switches of the CUDA backend, settable in every
-- build.  ddpm.backends.cuda.matmul.allow_tf32 (default false) lets float32 matmuls use TF32
-- tensor cores; ddpm.backends.cudnn.allow_tf32 (default true) and .benchmark (default false)
-- steer cuDNN convolutions, as in PyTorch.
local F = require 'ddpm.ffi'
local C = F.C

local FLAG = { matmul_tf32 = 0, cudnn_tf32 = 1, cudnn_benchmark = 2 }

local function switches(map, name)
  return setmetatable({}, {
    __index = function(_, k)
      local f = map[k]
      if f == nil then return nil end
      return C.ddpm_cuda_get_flag(f) ~= 0
    end,
    __newindex = function(_, k, v)
      local f = map[k]
      if f == nil then F.raise(string.format("%s has no setting '%s'", name, tostring(k))) end
      if type(v) ~= 'boolean' then F.raise(string.format('%s.%s must be true or false, got %s', name, k, tostring(v))) end
      if C.ddpm_cuda_set_flag(f, v and 1 or 0) ~= 0 then F.raise(F.last_error()) end
    end,
  })
end

local backends = {}
backends.cuda = {
  matmul = switches({ allow_tf32 = FLAG.matmul_tf32 }, 'ddpm.backends.cuda.matmul'),
  is_built = function() return C.ddpm_cuda_built() ~= 0 end,
}
backends.cudnn = switches({ allow_tf32 = FLAG.cudnn_tf32, benchmark = FLAG.cudnn_benchmark }, 'ddpm.backends.cudnn')

-- ddpm.backends.cpu.bf16_kernel(): which bfloat16 GEMM CPU autocast uses here: 'amx' (AMX tiles),
-- 'avx512_bf16' or 'generic' (chosen at run time; DDPM_CPU_ISA=avx512 / generic force the others)
backends.cpu = { bf16_kernel = function() return require('ffi').string(C.ddpm_cpu_bf16_kernel()) end }

-- torch.set_float32_matmul_precision: 'highest' (float32) or 'high'/'medium' (TF32)
function backends.set_float32_matmul_precision(p)
  if p ~= 'highest' and p ~= 'high' and p ~= 'medium' then
    F.raise("set_float32_matmul_precision: expected 'highest', 'high' or 'medium', got " .. tostring(p))
  end
  backends.cuda.matmul.allow_tf32 = p ~= 'highest'
end
function backends.get_float32_matmul_precision()
  return backends.cuda.matmul.allow_tf32 and 'high' or 'highest'
end

return backends
