# sample_full.py: seconds for a full DDPM sampling run in PyTorch + diffusers: 200 steps of UNet
# forward + DDPMScheduler.step for 20 images (4 per class), label embedding included.
#   python sample_full.py --per-class 4 --reps 1 [--inference-steps 200] [--threads N]
import common
from common import torch

p = common.parser(__doc__)
p.add_argument("--per-class", type=int, default=4)
p.add_argument("--reps", type=int, default=1, help="timed full runs")
p.add_argument("--inference-steps", type=int, default=common.TRAIN_TIMESTEPS)
args = p.parse_args()
common.setup(args)

emb, unet, sched = common.build(train=False)
batch = args.per_class * common.NUM_CLASSES
labels = torch.nn.functional.one_hot(torch.arange(batch) // args.per_class, common.NUM_CLASSES).float()


def run():
    sched.set_timesteps(args.inference_steps)
    x = torch.randn(batch, 3, 16, 16)
    with torch.no_grad():
        ehs = emb(labels).unsqueeze(1)
        for t in sched.timesteps:
            eps = unet(x, t, ehs).sample
            x = sched.step(eps, t, x).prev_sample
    return x


with torch.no_grad():  # warm-up: a few forwards, not a whole run
    ehs = emb(labels).unsqueeze(1)
    for _ in range(args.warmup):
        unet(torch.randn(batch, 3, 16, 16), 10, ehs)
times, cpu = [], []
for _ in range(args.reps):
    t0, c0 = common.now(), common.cpu_time()
    run()
    times.append(common.now() - t0)
    cpu.append(common.cpu_time() - c0)
common.emit("sample_full", batch, times, args, inference_steps=args.inference_steps,
            cpu_seconds=common.median(cpu))
