# sample_step.py: seconds per sampling step in PyTorch + diffusers: UNet forward under no_grad plus
# DDPMScheduler.step, at batch 20 (4 images per class), over timesteps spread across the schedule.
#   python sample_step.py --batch 20 --steps 10 --warmup 2 [--threads N]
import common
from common import torch

p = common.parser(__doc__)
p.add_argument("--batch", type=int, default=20)
p.add_argument("--steps", type=int, default=10, help="timed steps")
args = p.parse_args()
common.setup(args)

emb, unet, sched = common.build(train=False)
sched.set_timesteps(common.TRAIN_TIMESTEPS)
labels = torch.nn.functional.one_hot(torch.arange(args.batch) % common.NUM_CLASSES, common.NUM_CLASSES).float()
x = torch.randn(args.batch, 3, 16, 16)
ts = [int(v) for v in sched.timesteps]
times, cpu = [], []
with torch.no_grad():
    ehs = emb(labels).unsqueeze(1)
    for i in range(args.warmup + args.steps):
        t = ts[(i * 37) % len(ts)]
        t0, c0 = common.now(), common.cpu_time()
        eps = unet(x, t, ehs).sample
        x = sched.step(eps, t, x).prev_sample
        if i >= args.warmup:
            times.append(common.now() - t0)
            cpu.append(common.cpu_time() - c0)
common.emit("sample_step", args.batch, times, args, cpu_seconds=common.median(cpu))
