# train_step.py: seconds per training step of the reference job in PyTorch + diffusers: noise,
# random timesteps, add_noise, label net + UNet forward, MSE on the noise, backward, Adam step.
#   python train_step.py --batch 128 --steps 5 --warmup 2 [--threads N] [--bf16]
# --bf16 runs the forward under torch.autocast("cpu", dtype=torch.bfloat16) (mixed precision on CPU).
# torch 1.13 (the default peer) fails there inside diffusers' GroupNorm and reports "unsupported";
# the torch 2.x peer (tests/peer/install.sh --torch2, tests/peer/.venv-torch2) runs it.
import common
from common import torch

p = common.parser(__doc__)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--steps", type=int, default=5, help="timed steps")
p.add_argument("--bf16", action="store_true")
args = p.parse_args()
common.setup(args)

emb, unet, sched = common.build(train=True)
opt = torch.optim.Adam(list(unet.parameters()) + list(emb.parameters()), lr=1e-4)
F = torch.nn.functional
x, labels = common.synthetic_batch(args.batch)


def step():
    noise = torch.randn_like(x)
    t = torch.randint(0, common.TRAIN_TIMESTEPS, (args.batch,)).long()
    xt = sched.add_noise(x, noise, t)
    if args.bf16:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ehs = emb(labels).unsqueeze(1)
            pred = unet(xt, t, ehs).sample
        loss = F.mse_loss(pred.float(), noise)
    else:
        ehs = emb(labels).unsqueeze(1)
        pred = unet(xt, t, ehs).sample
        loss = F.mse_loss(pred, noise)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


try:
    for _ in range(args.warmup):
        step()
except RuntimeError as e:
    if not args.bf16:
        raise
    # torch 1.13's CPU autocast runs diffusers' GroupNorm with bf16 input and fp32 weight, and fails
    common.unsupported("train_step_bf16", args.batch, args, "torch %s CPU autocast: %s" % (
        torch.__version__, str(e).splitlines()[0]))
    raise SystemExit(0)
times, cpu = [], []
for _ in range(args.steps):
    t0, c0 = common.now(), common.cpu_time()
    loss = step()
    float(loss)  # the step is done (eager CPU: it already is)
    times.append(common.now() - t0)
    cpu.append(common.cpu_time() - c0)
common.emit("train_step_bf16" if args.bf16 else "train_step", args.batch, times, args,
            precision="bf16-autocast" if args.bf16 else "fp32", gflop_per_image=2.83,
            loss=float(loss), cpu_seconds=common.median(cpu))
