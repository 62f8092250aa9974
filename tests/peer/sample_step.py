# sample_step.py: seconds per sampling step in PyTorch + diffusers: UNet forward under no_grad plus
# DDPMScheduler.step, at batch 20 (4 images per class), over timesteps spread across the schedule.
#   python sample_step.py --batch 20 --steps 10 --warmup 2 [--threads N] [--bf16]
# --bf16 runs the label net and the UNet under torch.autocast("cpu", dtype=torch.bfloat16) and the
# scheduler step on the float32 noise prediction (torch 1.13's CPU autocast fails inside diffusers'
# GroupNorm and is reported as unsupported; tests/peer/install.sh --torch2 gives a torch 2.x peer).
import contextlib
import common
from common import torch

p = common.parser(__doc__)
p.add_argument("--batch", type=int, default=20)
p.add_argument("--steps", type=int, default=10, help="timed steps")
p.add_argument("--bf16", action="store_true")
args = p.parse_args()
common.setup(args)

emb, unet, sched = common.build(train=False)
sched.set_timesteps(common.TRAIN_TIMESTEPS)
labels = torch.nn.functional.one_hot(torch.arange(args.batch) % common.NUM_CLASSES, common.NUM_CLASSES).float()
x = torch.randn(args.batch, 3, 16, 16)
ts = [int(v) for v in sched.timesteps]
name = "sample_step_bf16" if args.bf16 else "sample_step"


def autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()


times, cpu = [], []
try:
    with torch.no_grad():
        with autocast():
            ehs = emb(labels).unsqueeze(1)
        for i in range(args.warmup + args.steps):
            t = ts[(i * 37) % len(ts)]
            t0, c0 = common.now(), common.cpu_time()
            with autocast():
                eps = unet(x, t, ehs).sample
            x = sched.step(eps.float(), t, x).prev_sample
            if i >= args.warmup:
                times.append(common.now() - t0)
                cpu.append(common.cpu_time() - c0)
except RuntimeError as e:
    if not args.bf16:
        raise
    common.unsupported(name, args.batch, args, "torch %s CPU autocast: %s" % (torch.__version__, str(e).splitlines()[0]))
    raise SystemExit(0)
common.emit(name, args.batch, times, args, cpu_seconds=common.median(cpu),
            precision="bf16-autocast" if args.bf16 else "fp32")
