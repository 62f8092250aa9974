-- io_cuda_spec.lua: file formats and the DataLoader with tensors on a CUDA device: saving copies
-- device tensors to the host, loading moves them to the requested device, ddpm.save/ddpm.load
-- restore the saved device (or map_location).  Skips without a GPU.
local ddpm = require 'ddpm'
local H = require 'formats_helpers'

local has_gpu, why = pcall(function() return ddpm.zeros(1):to('cuda') end)

describe('formats on CUDA', function()
  local dir
  setup(function() dir = H.tmpdir('cuda') end)
  teardown(function() H.rmdir(dir) end)
  local function need_gpu()
    if not has_gpu then
      pending('needs a CUDA GPU: ' .. tostring(why):gsub('^.-:%d+: ', ''))
      return false
    end
    return true
  end

  it('saves device tensors and loads them onto a device', function()
    if not need_gpu() then return end
    local x = ddpm.randn(4, 5)
    local xc = x:to('cuda')
    ddpm.save_safetensors(dir .. '/c.safetensors', { x = xc, i = ddpm.arange(6):to('cuda') })
    local back = ddpm.load_safetensors(dir .. '/c.safetensors')
    assert.is_true(back.x:equal(x))
    local on = ddpm.load_safetensors(dir .. '/c.safetensors', { device = 'cuda' })
    assert.are.equal('cuda', on.x.device.type)
    assert.is_true(on.x:cpu():equal(x))
    ddpm.save_npy(dir .. '/c.npy', xc)
    assert.is_true(ddpm.load_npy(dir .. '/c.npy'):equal(x))
    local img = ddpm.randint(0, 256, { 4, 4, 3 }, { dtype = ddpm.uint8 })
    ddpm.io.save_png(dir .. '/c.png', img:to('cuda'))
    assert.is_true(ddpm.io.load_png(dir .. '/c.png'):equal(img))
  end)

  it('ddpm.save/ddpm.load restore the device, or map_location', function()
    if not need_gpu() then return end
    local x = ddpm.randn(3)
    ddpm.save({ w = x:to('cuda'), c = x }, dir .. '/ck.safetensors')
    local b = ddpm.load(dir .. '/ck.safetensors')
    assert.are.equal('cuda', b.w.device.type)
    assert.are.equal('cpu', b.c.device.type)
    assert.is_true(b.w:cpu():equal(x))
    local m = ddpm.load(dir .. '/ck.safetensors', { map_location = 'cpu' })
    assert.are.equal('cpu', m.w.device.type)
  end)

  it('DataLoader moves batches to the device', function()
    if not need_gpu() then return end
    local ds = ddpm.data.TensorDataset(ddpm.randn(10, 3, 2, 2), ddpm.arange(10))
    local loader = ddpm.data.DataLoader(ds, { batch_size = 4, device = 'cuda' })
    local n = 0
    for x, y in loader do
      assert.are.equal('cuda', x.device.type)
      assert.are.equal('cuda', y.device.type)
      n = n + y:size(0)
    end
    assert.are.equal(10, n)
  end)
end)
