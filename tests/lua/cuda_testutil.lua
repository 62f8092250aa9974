-- cuda_testutil.lua: shared by the tests/lua/cuda_*_spec.lua files: whether a GPU is there (with
-- DDPM_REQUIRE_GPU=1 its absence is an error, so a GPU run cannot silently skip everything), and
-- CUDA-vs-CPU comparison of values and gradients.
local ddpm = require 'ddpm'
local testing = require 'ddpm.testing'
local assert = require 'luassert' -- busted's assert lives in the spec files' environment only

local M = {}

-- DDPM_TEST_DEVICE=cpu dry-runs the comparison specs on the CPU (checks the specs themselves on
-- machines without a GPU; every comparison is then CPU against CPU).
M.dev = os.getenv('DDPM_TEST_DEVICE') or 'cuda'
M.dry = M.dev == 'cpu'

function M.gpu()
  if M.dry then return true end
  local ok = ddpm.cuda.is_available()
  if not ok and os.getenv('DDPM_REQUIRE_GPU') == '1' then
    error('DDPM_REQUIRE_GPU=1 but no CUDA GPU is usable (built with CUDA: ' .. tostring(ddpm.cuda.is_built()) .. ')')
  end
  return ok
end

-- Specs skip a describe block with: if not U.gpu() then pending('needs a CUDA GPU: ...') return end
-- (pending only exists in the spec files' environment).

M.tol = {
  float32 = { rtol = 1e-5, atol = 1e-5 },
  float64 = { rtol = 1e-12, atol = 1e-12 },
  float16 = { rtol = 2e-3, atol = 2e-3 },
  bfloat16 = { rtol = 1.6e-2, atol = 1.6e-2 },
}

local function is_tensor(x) return ddpm.is_tensor(x) end

-- compare(fn, inputs, opts): run fn on CPU tensors and on CUDA copies of them; the results (a
-- tensor or a list of tensors) must agree within opts.rtol/atol, and with opts.grad the gradients
-- of sum(out * R) with respect to every floating input as well.  opts.name labels failures.
function M.compare(fn, inputs, opts)
  opts = opts or {}
  local name = opts.name or 'op'
  local cin, gin = {}, {}
  for i, x in ipairs(inputs) do
    if is_tensor(x) then
      cin[i] = x:detach():clone()
      gin[i] = x:detach():to(M.dev)
      if M.dry then gin[i] = gin[i]:clone() end
      if opts.grad and x:is_floating_point() then
        cin[i]:requires_grad_(true)
        gin[i]:requires_grad_(true)
      end
    else
      cin[i], gin[i] = x, x
    end
  end
  local yc, yg = fn(unpack(cin)), fn(unpack(gin))
  local lc = is_tensor(yc) and { yc } or yc
  local lg = is_tensor(yg) and { yg } or yg
  assert.are.equal(#lc, #lg)
  for k = 1, #lc do
    assert.are.equal(M.dry and 'cpu' or 'cuda', lg[k].device.type, name .. ': result ' .. k .. ' is not on the GPU')
    assert.are.equal(tostring(lc[k].dtype), tostring(lg[k].dtype), name .. ': dtypes differ')
    assert.are.same(lc[k]:shape(), lg[k]:shape())
    if opts.exact then
      assert.is_true(lc[k]:equal(lg[k]:cpu()), name .. ': results differ (exact comparison)')
    else
      testing.assert_close(lg[k]:cpu(), lc[k], { rtol = opts.rtol, atol = opts.atol, msg = name })
    end
  end
  if opts.grad then
    local yc1, yg1 = lc[1], lg[1]
    local R = ddpm.randn(yc1:shape(), { dtype = yc1.dtype, generator = ddpm.Generator():manual_seed(7) })
    ;(yc1 * R):sum():backward()
    ;(yg1 * R:to(M.dev)):sum():backward()
    for i, x in ipairs(cin) do
      if is_tensor(x) and x.requires_grad then
        local a, b = x.grad, gin[i].grad
        if a == nil and b == nil then goto continue end -- an input the op does not differentiate
        assert.is_not_nil(a, name .. ': no CPU gradient for input ' .. i)
        assert.is_not_nil(b, name .. ': no CUDA gradient for input ' .. i)
        assert.are.equal(M.dry and 'cpu' or 'cuda', b.device.type)
        testing.assert_close(b:cpu(), a, { rtol = opts.grtol or opts.rtol, atol = opts.gatol or opts.atol,
          msg = name .. ' gradient of input ' .. i })
      end
      ::continue::
    end
  end
  return yc, yg
end

return M
