# startup.py: seconds from process start to the end of the first UNet forward (batch 1) in
# PyTorch + diffusers: interpreter start, importing torch and diffusers, building the model.
# The clock starts at BENCH_T0_NS (CLOCK_REALTIME nanoseconds set by the driver just before it
# starts this process) or, without it, at the process start time from /proc/self/stat (10 ms).
#   BENCH_T0_NS=$(date +%s%N) python startup.py
import os
import time


def t0_ns():
    v = os.environ.get("BENCH_T0_NS")
    if v:
        return int(v), "driver"
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as f:
        btime = next(int(l.split()[1]) for l in f if l.startswith("btime"))
    return int((btime + start_ticks / os.sysconf("SC_CLK_TCK")) * 1e9), "proc-stat"


import common  # noqa: E402  (imports torch: part of what is measured)
from common import torch  # noqa: E402

args = common.parser(__doc__).parse_args()
common.setup(args)
emb, unet, sched = common.build(train=False)
with torch.no_grad():
    ehs = emb(torch.nn.functional.one_hot(torch.tensor([0]), common.NUM_CLASSES).float()).unsqueeze(1)
    unet(torch.randn(1, 3, 16, 16), 10, ehs)
end = time.time_ns()
start, clock = t0_ns()
common.emit("startup", 1, [(end - start) / 1e9], args, clock=clock)
