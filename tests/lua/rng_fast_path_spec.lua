-- rng_fast_path_spec.lua: the vectorised float32 uniform draw (AVX-512 Philox, chosen at run time)
-- gives bit for bit the numbers of the portable path (DDPM_CPU_ISA=generic), for odd lengths,
-- odd offsets and a counter that carries across 2^32 inside a vector.
local H = require 'host_run'

local DRAW = [[
local F = require 'ddpm.ffi'
local g = ddpm.Generator()
local parts = {}
for _, c in ipairs({ {0, 100003, 0, 1}, {7, 33, -2, 3}, {5, 4096, -0.0625, 0.0625}, {2^32 - 21, 100, -0.5, 0.5},
    {2^32 - 3, 17, 0, 1}, {123456789, 7777, -0.1, 0.1}, {0, 15, 0, 1}, {1, 16, 0, 1} }) do
  g:set_state({ seed = 42, offset = c[1] })
  local x = ddpm.empty(c[2])
  F.check(F.C.ddpm_uniform_(x, c[3], c[4], g.handle))
  parts[#parts + 1] = x
end
ddpm.io.save_npy(arg[1], ddpm.cat(parts, 0))
]]

describe('float32 uniform draws', function()
  it('are the same on the vectorised and the portable path', function()
    local dir = H.tmpdir()
    local script = dir .. '/draw.lua'
    H.write(script, DRAW)
    local a = H.run(H.q(script) .. ' ' .. H.q(dir .. '/fast.npy'))
    local b = H.run(H.q(script) .. ' ' .. H.q(dir .. '/generic.npy'), { env = { DDPM_CPU_ISA = 'generic' } })
    assert.are.equal(0, a.status, a.stderr)
    assert.are.equal(0, b.status, b.stderr)
    local fa, fb = H.read(dir .. '/fast.npy'), H.read(dir .. '/generic.npy')
    H.rmdir(dir)
    assert.is_true(#fa > 100000 * 4)
    assert.is_true(fa == fb, 'the two paths drew different numbers')
  end)
end)
