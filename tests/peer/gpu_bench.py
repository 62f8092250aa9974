# gpu_bench.py: the PyTorch + diffusers peer of scripts/bench/gpu_bench.lua on a CUDA GPU: training
# images/s at a batch (noise, random timesteps, add_noise, label net + UNet, MSE, backward, Adam) and
# the time to sample 20 images in 200 DDPM steps; eager float32, eager under autocast (bf16, as the
# tutorial's mixed precision), and torch.compile.  One JSON line per measurement.
#   python3 gpu_bench.py [--batch 128] [--steps 30] [--sample-steps 200] [--modes eager-fp32,...]
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--steps", type=int, default=30)
p.add_argument("--sample-steps", type=int, default=200)
p.add_argument("--modes", default="eager-fp32,eager-bf16,compile-fp32,compile-bf16")
args = p.parse_args()

from diffusers import DDPMScheduler, UNet2DConditionModel  # noqa: E402

CFG = dict(sample_size=16, in_channels=3, out_channels=3, layers_per_block=2, block_out_channels=(64, 128),
           down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
           up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), encoder_hid_dim=64)
dev = "cuda"
name = torch.cuda.get_device_name(0)


def emit(rec):
    rec.update(device=name, torch=torch.__version__)
    print(json.dumps(rec), flush=True)


def models():
    torch.manual_seed(0)
    emb = torch.nn.Sequential(torch.nn.Linear(5, 64), torch.nn.GELU(), torch.nn.Linear(64, 64)).to(dev)
    unet = UNet2DConditionModel(**CFG).to(dev)
    opt = torch.optim.Adam(list(unet.parameters()) + list(emb.parameters()), lr=1e-4)
    return emb, unet, opt


def labels(n):
    return F.one_hot(torch.arange(n) % 5, 5).float().to(dev)


def time_ms(fn, n, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(n):
        fn()
    b.record()
    b.synchronize()
    return a.elapsed_time(b) / n


def train(mode):
    emb, unet, opt = models()
    model = torch.compile(unet) if mode.startswith("compile") else unet
    sched = DDPMScheduler(num_train_timesteps=200)
    B = args.batch
    x = torch.rand(B, 3, 16, 16, device=dev) * 2 - 1
    lab = labels(B)
    bf16 = mode.endswith("bf16")

    def step():
        noise = torch.randn_like(x)
        t = torch.randint(0, 200, (B,), device=dev)
        xt = sched.add_noise(x, noise, t)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            pred = model(xt, t, emb(lab).unsqueeze(1)).sample
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        return loss

    ms = time_ms(step, args.steps, warm=5 if mode.startswith("compile") else 3)
    emit(dict(name="train_step", impl="pytorch+diffusers", mode=mode, batch=B, ms_per_step=ms,
              images_per_s=B / ms * 1000, peak_mib=torch.cuda.max_memory_allocated() / 2 ** 20))


@torch.no_grad()
def sample(mode):
    emb, unet, _ = models()
    unet.eval()
    model = torch.compile(unet) if mode.startswith("compile") else unet
    sched = DDPMScheduler(num_train_timesteps=200)
    sched.set_timesteps(args.sample_steps)
    bf16 = mode.endswith("bf16")
    ehs = emb(labels(20)).unsqueeze(1)
    g = torch.Generator(device=dev).manual_seed(0)

    def run():
        xx = torch.randn(20, 3, 16, 16, device=dev, generator=g)
        for t in sched.timesteps:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                eps = model(xx, t, ehs).sample
            xx = sched.step(eps.float(), t, xx, generator=g).prev_sample
        return xx

    ms = time_ms(run, 3, warm=1)
    emit(dict(name="sample_20", impl="pytorch+diffusers", mode=mode, steps=args.sample_steps, seconds=ms / 1000))


for mode in args.modes.split(","):
    for fn in (train, sample):
        try:
            t0 = time.time()
            fn(mode)
        except Exception as e:  # one failing mode must not hide the others
            emit(dict(name=fn.__name__, impl="pytorch+diffusers", mode=mode, error=repr(e)[:300]))
        torch.cuda.empty_cache()
sys.exit(0)
