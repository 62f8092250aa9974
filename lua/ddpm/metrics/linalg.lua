-- metrics/linalg.lua: the small dense linear algebra the Fréchet distance needs, in float64:
-- a symmetric eigen-decomposition (cyclic Jacobi), the square root of a symmetric positive
-- semi-definite matrix from it, Newton-Schulz as an independent check, and trace(sqrt(A B)).
--
-- Jacobi works on a plain double array through the FFI: the matrices here are feature covariances
-- (at most a few hundred rows; 64 for the sprite classifier) computed once per evaluation, where
-- an O(n^3) loop compiled by LuaJIT takes milliseconds; the engine has no eigen-solver op, and one
-- would need a backward and a CUDA kernel to earn its place there.  Jacobi is also the accurate
-- choice: it finds small eigenvalues to high relative precision, which the square root of a
-- nearly singular covariance needs.
local ffi = require 'ffi'
local ddpm = require 'ddpm'
local T = require 'ddpm.tensor'
local raise = require('ddpm.ffi').raise

local M = {}

local function square_matrix(A, who)
  T.need_tensor(A, 'A', who)
  if A:dim() ~= 2 or A:size(0) ~= A:size(1) then
    raise(string.format('%s: expected a square matrix [n, n], got shape [%s]', who, table.concat(A:shape(), ', ')))
  end
  if A.device.type ~= 'cpu' then A = A:to('cpu') end
  return A:double():contiguous():clone(), A:size(0)
end

local function to_array(t, n)
  local a = ffi.new('double[?]', n)
  ffi.copy(a, ffi.cast('double *', t:data_ptr()), n * 8)
  return a
end

local function from_array(a, shape, n)
  return ddpm.frombuffer(a, shape, ddpm.float64, { nbytes = n * 8 }):clone()
end

-- eigh(A, {tol=1e-14, max_sweeps=100}) -> eigenvalues float64 [n] (ascending), eigenvectors float64
-- [n, n] (column k belongs to eigenvalue k), as torch.linalg.eigh.  A must be symmetric (checked to
-- a relative 1e-8; the mean of A and A^T is used).
function M.eigh(A, opts)
  local who = 'metrics.linalg.eigh'
  opts = opts or {}
  local S, n = square_matrix(A, who)
  local asym = (S - S:t()):abs():max():item()
  local scale = S:abs():max():item()
  if asym > 1e-8 * math.max(scale, 1e-300) then
    raise(string.format('%s: the matrix is not symmetric (largest |A - A^T| = %g, largest |A| = %g)', who, asym, scale))
  end
  if not S:isfinite():all() then raise(who .. ': the matrix has NaN or infinite entries') end
  S = ((S + S:t()) * 0.5):contiguous()
  local a = to_array(S, n * n)
  local v = ffi.new('double[?]', n * n)
  for i = 0, n - 1 do v[i * n + i] = 1 end
  local tol = opts.tol or 1e-14
  local total = 0
  for i = 0, n * n - 1 do total = total + a[i] * a[i] end
  local sweeps = 0
  for sweep = 1, opts.max_sweeps or 100 do
    local off = 0
    for p = 0, n - 2 do
      for q = p + 1, n - 1 do off = off + a[p * n + q] * a[p * n + q] end
    end
    if off <= tol * tol * total or off == 0 then break end
    sweeps = sweep
    for p = 0, n - 2 do
      for q = p + 1, n - 1 do
        local apq = a[p * n + q]
        if apq ~= 0 then
          -- the rotation in the (p, q) plane that zeroes a[p][q]: t = tan(phi), the smaller root of
          -- t^2 + 2 t theta - 1 = 0 (|phi| <= pi/4, so the rest of the matrix changes least)
          local theta = (a[q * n + q] - a[p * n + p]) / (2 * apq)
          local t
          if math.abs(theta) > 1e150 then
            t = 1 / (2 * theta)
          else
            t = 1 / (math.abs(theta) + math.sqrt(theta * theta + 1))
            if theta < 0 then t = -t end
          end
          local c = 1 / math.sqrt(t * t + 1)
          local s = t * c
          for k = 0, n - 1 do
            local akp, akq = a[k * n + p], a[k * n + q]
            a[k * n + p] = c * akp - s * akq
            a[k * n + q] = s * akp + c * akq
          end
          for k = 0, n - 1 do
            local apk, aqk = a[p * n + k], a[q * n + k]
            a[p * n + k] = c * apk - s * aqk
            a[q * n + k] = s * apk + c * aqk
          end
          for k = 0, n - 1 do
            local vkp, vkq = v[k * n + p], v[k * n + q]
            v[k * n + p] = c * vkp - s * vkq
            v[k * n + q] = s * vkp + c * vkq
          end
        end
      end
    end
  end
  local d = ffi.new('double[?]', n)
  for i = 0, n - 1 do d[i] = a[i * n + i] end
  local w = from_array(d, { n }, n)
  local V = from_array(v, { n, n }, n * n)
  -- ascending order (the engine has no sort op; n is small): a Lua sort of the indices
  local idx = {}
  for i = 0, n - 1 do idx[i + 1] = i end
  table.sort(idx, function(x, y) return d[x] < d[y] end)
  local order = ddpm.tensor(idx, { dtype = ddpm.int64 })
  return w:index_select(0, order), V:index_select(1, order), sweeps
end

-- sqrtm_psd(A) -> the symmetric square root of a symmetric positive semi-definite matrix
-- (V diag(sqrt(max(w, 0))) V^T; eigenvalues below zero by rounding are treated as zero)
function M.sqrtm_psd(A)
  local w, V = M.eigh(A)
  local lo = w:min():item()
  local hi = math.max(math.abs(w:max():item()), 1e-300)
  if lo < -1e-6 * hi then
    raise(string.format('metrics.linalg.sqrtm_psd: the matrix is not positive semi-definite (smallest eigenvalue %g, '
      .. 'largest %g)', lo, hi))
  end
  local r = w:clamp(0, math.huge):sqrt()
  return (V * r:unsqueeze(0)):matmul(V:t())
end

-- sqrtm_newton_schulz(A, {iters=100, tol=1e-12}) -> sqrt(A) by the coupled Newton-Schulz iteration
-- (Higham 2008, (6.35)): Y -> Y (3I - Z Y) / 2, Z -> (3I - Z Y) Z / 2 from Y = A / ||A||_F, Z = I,
-- which converges to sqrt(A / ||A||_F) for a matrix with positive real eigenvalues.  Only matrix
-- products, but slow for ill-conditioned matrices; the Jacobi route is the default.
function M.sqrtm_newton_schulz(A, opts)
  opts = opts or {}
  local S, n = square_matrix(A, 'metrics.linalg.sqrtm_newton_schulz')
  local norm = S:square():sum():sqrt():item()
  if norm == 0 then return S:clone() end
  local I = ddpm.eye(n, n, { dtype = ddpm.float64 })
  local Y, Z = S / norm, I
  for _ = 1, opts.iters or 100 do
    local Tm = (I * 3 - Z:matmul(Y)) * 0.5
    local Y2 = Y:matmul(Tm)
    Z = Tm:matmul(Z)
    local delta = (Y2 - Y):abs():max():item()
    Y = Y2
    if delta < (opts.tol or 1e-12) then break end
  end
  return Y * math.sqrt(norm)
end

-- trace_sqrt_product(A, B) -> trace(sqrt(A B)) for symmetric positive semi-definite A and B: A B is
-- similar to sqrt(A) B sqrt(A), which is symmetric PSD, so it is the sum of the square roots of
-- that matrix's eigenvalues (no non-symmetric square root needed)
function M.trace_sqrt_product(A, B)
  local rA = M.sqrtm_psd(A)
  local Mx = rA:matmul(B:double()):matmul(rA)
  local w = M.eigh((Mx + Mx:t()) * 0.5)
  return w:clamp(0, math.huge):sqrt():sum():item()
end

return M
