-- demo.lua: the quick-start job: fits a small MLP to a synthetic 2-D regression problem with
-- autograd and hand-written SGD, printing the falling loss.  (A stand-in until the diffusion
-- training script lands; it exercises tensors, autograd, no_grad, the CLI and the progress bar.)
local ddpm = require 'ddpm'
local progress = require 'ddpm.utils.progress'

local args = ddpm.cli.parse(arg, {
  description = 'Fit y = sin(3 x0) cos(2 x1) with a 2-layer MLP (tanh) by full-batch SGD.',
  options = {
    { '--steps', type = 'integer', default = 2000, min = 1, help = 'optimisation steps' },
    { '--lr', type = 'number', default = 0.1, help = 'SGD learning rate' },
    { '--hidden', type = 'integer', default = 64, min = 1, help = 'hidden units' },
    { '--samples', type = 'integer', default = 1024, min = 1, help = 'training points' },
    { '--seed', type = 'integer', default = 0, help = 'random seed' },
  },
})
ddpm.manual_seed(args.seed)

-- the data: points in [-1, 1]^2 and a smooth target
local x = ddpm.rand(args.samples, 2) * 2 - 1
local y = (x:narrow(1, 0, 1) * 3):sin() * (x:narrow(1, 1, 1) * 2):cos() -- [N, 1]

-- the model: parameters are leaf tensors that require grad (what nn.Linear will hold)
local H = args.hidden
local W1 = (ddpm.randn(2, H) / math.sqrt(2)):requires_grad_(true)
local b1 = ddpm.zeros(H, { requires_grad = true })
local W2 = (ddpm.randn(H, 1) / math.sqrt(H)):requires_grad_(true)
local b2 = ddpm.zeros(1, { requires_grad = true })
local params = { W1, b1, W2, b2 }

local function forward(inp) return (inp:matmul(W1) + b1):tanh():matmul(W2) + b2 end
local function mse(a, b) return (a - b):square():mean() end

local first
local bar = progress(args.steps, { desc = 'demo', unit = 'step' })
for step in bar do
  local loss = mse(forward(x), y)
  loss:backward()
  -- SGD outside the graph; gradients accumulate, so they are zeroed after each step
  ddpm.no_grad(function()
    for _, p in ipairs(params) do
      p:sub_(p.grad * args.lr)
      p.grad:zero_()
    end
  end)
  local l = loss:item()
  first = first or l
  bar:set_postfix({ loss = l })
  if step % 500 == 0 or step == args.steps then bar:write(string.format('step %4d  loss %.5f', step, l)) end
end

local final = ddpm.no_grad(function() return mse(forward(x), y):item() end)
print(string.format('loss %.5f -> %.5f after %d steps', first, final, args.steps))
if not (final < first) then
  io.stderr:write('demo: the loss did not decrease\n')
  os.exit(1)
end
