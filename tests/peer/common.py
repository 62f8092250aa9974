# common.py: shared setup of the peer benchmarks: fair thread settings (set before torch loads),
# the reference job's models (label net + diffusers UNet2DConditionModel + DDPMScheduler), synthetic
# data, timing helpers and the JSON-line output that scripts/bench/run.sh reads.
import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

# Threads are fixed before torch is imported: OpenBLAS reads its env var when it loads, and the
# fixtures were made with OPENBLAS_NUM_THREADS=1 + torch.set_num_threads(cores).
_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--threads", type=int, default=os.cpu_count())
_pre.add_argument("--openblas-threads", type=int, default=1)
_pre_args, _ = _pre.parse_known_args()
os.environ["OPENBLAS_NUM_THREADS"] = str(_pre_args.openblas_threads)
os.environ.setdefault("OMP_NUM_THREADS", str(_pre_args.threads))

import torch  # noqa: E402  (after the environment above)

# The seed UNet config (shared/fixtures/seed/unet/config.json, diffusers defaults elsewhere).
UNET_CONFIG = dict(
    sample_size=16, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(64, 128),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    encoder_hid_dim=64,
)
NUM_CLASSES = 5
TRAIN_TIMESTEPS = 200


def parser(description):
    p = argparse.ArgumentParser(description=description, parents=[_pre])
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--seed", type=int, default=0)
    return p


def setup(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)


def build(train=True):
    """The label net, the UNet and the scheduler of the reference job."""
    from diffusers import UNet2DConditionModel, DDPMScheduler
    emb = torch.nn.Sequential(torch.nn.Linear(NUM_CLASSES, 64), torch.nn.GELU(), torch.nn.Linear(64, 64))
    unet = UNet2DConditionModel(**UNET_CONFIG)
    sched = DDPMScheduler(num_train_timesteps=TRAIN_TIMESTEPS)
    emb.train(train)
    unet.train(train)
    return emb, unet, sched


def synthetic_batch(batch):
    """Images uniform in [-1, 1] and random one-hot labels: no data set needed."""
    x = torch.rand(batch, 3, 16, 16) * 2 - 1
    labels = torch.nn.functional.one_hot(torch.randint(0, NUM_CLASSES, (batch,)), NUM_CLASSES).float()
    return x, labels


def now():
    return time.perf_counter()


def cpu_time():
    return time.process_time()  # user + system of every thread of the process


median = statistics.median


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def versions():
    import diffusers
    return {"impl": "pytorch+diffusers", "torch": torch.__version__, "diffusers": diffusers.__version__,
            "python": platform.python_version()}


def emit(name, batch, times, args, **extra):
    """One JSON line per measurement; seconds are the median of the repetitions."""
    med = statistics.median(times)
    rec = {"name": name, "impl": "peer", "batch": batch, "seconds": med,
           "images_per_s": (batch / med) if (batch and med > 0) else None,
           "reps": len(times), "times": times, "min": min(times), "max": max(times),
           "peak_rss_mb": peak_rss_mb(), "threads": args.threads,
           "openblas_threads": int(os.environ["OPENBLAS_NUM_THREADS"]),
           "versions": versions()}
    rec.update(extra)
    print(json.dumps(rec), flush=True)
    return rec


def unsupported(name, batch, args, why):
    """A measurement the peer cannot run: a line saying so, instead of a time."""
    print(json.dumps({"name": name, "impl": "peer", "batch": batch, "unsupported": why,
                      "threads": args.threads, "versions": versions()}), flush=True)
