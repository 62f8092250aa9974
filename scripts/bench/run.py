#!/usr/bin/env python3
"""run.py: ddpm-lua against the PyTorch + diffusers peer, side by side in one run.

Each measurement runs in its own process, ddpm-lua and the peer ALTERNATELY (the order flips every
repetition so drift in the machine's load hits both), several repetitions each; the medians give the
ratios: speed = peer seconds / ddpm-lua seconds (> 1: ddpm-lua is faster), memory = ddpm-lua peak
RSS / peer peak RSS (< 1: ddpm-lua uses less). Prints a table, writes
docs/benchmarks/results-<date>.json and the "latest results" section of docs/BENCHMARKS.md.
Needs the peer (tests/peer/install.sh) and a built ddpm-lua (cmake --build build).

  scripts/bench/run.sh [--quick] [--reps 3] [--threads N] [--only train_step,startup] [--ours-only] [--bf16]

The bf16 rows (train_step_bf16_b128, sample_step_bf16_b20: autocast('cpu', bfloat16) on both sides)
run with --bf16 or when named in --only; each brings its fp32 row along, for the bf16/fp32 ratios.
torch 1.13 (the default peer) cannot run diffusers under CPU autocast; for a PyTorch number use the
torch 2.x peer for the whole run: tests/peer/install.sh --torch2, then
  scripts/bench/run.sh --bf16 --only train_step_b128 --peer-python tests/peer/.venv-torch2/bin/python
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BENCH = os.path.join(ROOT, "scripts", "bench")
PEER = os.path.join(ROOT, "tests", "peer")
BEGIN, END = "<!-- bench:latest:begin -->", "<!-- bench:latest:end -->"


def measurements(quick):
    """(key, label, script stem, args): the same options go to the Lua and the Python program."""
    few = quick
    return [
        ("train_step_b128", "training step, batch 128, fp32", "train_step",
         ["--batch", "128", "--steps", "2" if few else "3", "--warmup", "1"]),
        ("train_step_b32", "training step, batch 32, fp32", "train_step",
         ["--batch", "32", "--steps", "3" if few else "5", "--warmup", "2"]),
        ("train_step_bf16_b128", "training step, batch 128, bf16 autocast", "train_step",
         ["--batch", "128", "--steps", "2" if few else "3", "--warmup", "1", "--bf16"]),
        ("sample_step_b20", "sampling step, batch 20 (UNet + DDPM step)", "sample_step",
         ["--batch", "20", "--steps", "5" if few else "10", "--warmup", "2"]),
        ("sample_step_bf16_b20", "sampling step, batch 20, bf16 autocast", "sample_step",
         ["--batch", "20", "--steps", "5" if few else "10", "--warmup", "2", "--bf16"]),
        ("sample_full_20", "full sampling, 200 steps, 20 images", "sample_full",
         ["--per-class", "4", "--reps", "1", "--warmup", "1"]),
        ("startup", "process start to first UNet forward", "startup", []),
    ]


def fp32_key(key):
    """the fp32 row a bf16 row is compared with (train_step_bf16_b128 -> train_step_b128)"""
    return key.replace("_bf16", "") if "_bf16" in key else None


def select(all_m, only, bf16):
    """the measurements to run: --only names (keys or script stems), else the fp32 set (plus the bf16
    rows with --bf16); a bf16 row brings its fp32 row, so bf16/fp32 ratios come from the same run"""
    def named(m):
        if only:
            return m[0] in only or (m[2] in only and ("_bf16" not in m[0] or bf16))
        return "_bf16" not in m[0] or bf16
    keys = {m[0] for m in all_m if named(m)}
    keys |= {fp32_key(k) for k in list(keys) if fp32_key(k)}
    return [m for m in all_m if m[0] in keys]


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        return ""


def machine():
    lscpu = {}
    for line in sh("LC_ALL=C lscpu").splitlines():
        k, _, v = line.partition(":")
        lscpu[k.strip()] = v.strip()
    mem_kb = int(next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0))
    osname = next((l.split("=", 1)[1].strip().strip('"') for l in open("/etc/os-release")
                   if l.startswith("PRETTY_NAME")), platform.system())
    return {
        "cpu": lscpu.get("Model name", platform.processor()),
        "cpus": os.cpu_count(), "threads_per_core": lscpu.get("Thread(s) per core"),
        "hypervisor": lscpu.get("Hypervisor vendor"),
        "memory_gib": round(mem_kb / 1024 / 1024, 1), "os": osname, "kernel": platform.release(),
        "openblas": sh("dpkg-query -W -f='${Version}' libopenblas0-openmp 2>/dev/null"),
        "luajit": sh("dpkg-query -W -f='${Version}' libluajit-5.1-2 2>/dev/null"),
        "gcc": sh("gcc -dumpfullversion"),
        "ddpm_lua_commit": sh(f"git -C {shlex.quote(ROOT)} rev-parse --short HEAD")
        + (" (modified)" if sh(f"git -C {shlex.quote(ROOT)} status --porcelain --untracked-files=no") else ""),
    }


def loadavg():
    return [float(v) for v in open("/proc/loadavg").read().split()[:3]]


def run_one(impl, stem, args, opts):
    env = dict(os.environ)
    for kv in opts.env:
        k, _, v = kv.partition("=")
        env[k] = v
    if impl == "ours":
        cmd = [opts.ddpm_lua, os.path.join(BENCH, stem + ".lua")] + args + ["--threads", str(opts.threads)]
    else:
        cmd = [opts.peer_python, os.path.join(PEER, stem + ".py")] + args + ["--threads", str(opts.threads)]
        env["OPENBLAS_NUM_THREADS"] = "1"
    env["BENCH_T0_NS"] = str(time.time_ns())
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=opts.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {opts.timeout} s", "cmd": cmd}
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {p.returncode}: " + " | ".join(tail), "cmd": cmd}
    rec = json.loads(lines[-1])
    rec["cmd"] = cmd
    return rec


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summarize(key, label, runs):
    out = {"key": key, "label": label}
    for impl in ("ours", "peer"):
        recs = [r for r in runs[impl] if "error" not in r and "unsupported" not in r]
        out[impl] = {
            "seconds": med([r["seconds"] for r in recs]),
            "per_process_seconds": [r["seconds"] for r in recs],
            "best_seconds": min((r.get("min", r["seconds"]) for r in recs), default=None),
            "cpu_seconds": med([r.get("cpu_seconds") for r in recs]),
            "peak_rss_mb": med([r.get("peak_rss_mb") for r in recs]),
            "batch": recs[0]["batch"] if recs else None,
            "errors": [r["error"] for r in runs[impl] if "error" in r],
            "unsupported": next((r["unsupported"] for r in runs[impl] if "unsupported" in r), None),
            "versions": recs[0].get("versions") if recs else None,
        }
    o, p = out["ours"]["seconds"], out["peer"]["seconds"]
    out["speed_ratio"] = (p / o) if (o and p) else None
    # Load on a shared machine only ever adds time, so the ratio of the fastest steps is a second,
    # less noisy view (the median one is the headline).
    bo, bp = out["ours"]["best_seconds"], out["peer"]["best_seconds"]
    out["best_ratio"] = (bp / bo) if (bo and bp) else None
    co, cp = out["ours"]["cpu_seconds"], out["peer"]["cpu_seconds"]
    out["cpu_ratio"] = (cp / co) if (co and cp) else None
    mo, mp = out["ours"]["peak_rss_mb"], out["peer"]["peak_rss_mb"]
    out["memory_ratio"] = (mo / mp) if (mo and mp) else None
    return out


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def add_vs_fp32(rows):
    """bf16 rows get the seconds of their fp32 row and the speed-ups fp32/bf16 of each side"""
    by = {r["key"]: r for r in rows}
    for r in rows:
        f = by.get(fp32_key(r["key"]) or "")
        if not f:
            continue
        of, pf = f["ours"]["seconds"], f["peer"]["seconds"]
        ob, pb = r["ours"]["seconds"], r["peer"]["seconds"]
        r["vs_fp32"] = {"ours_fp32_seconds": of, "peer_fp32_seconds": pf,
                        "ours_speedup": (of / ob) if (of and ob) else None,
                        "peer_speedup": (pf / pb) if (pf and pb) else None}
    return rows


def table(rows):
    lines = ["| measurement | ddpm-lua s | peer s | speed ratio (peer/ours) | best-step ratio | CPU-time ratio "
             "| ddpm-lua img/s | peer img/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        o, p = r["ours"], r["peer"]
        oi = o["batch"] / o["seconds"] if o["seconds"] and o["batch"] and r["key"] != "startup" else None
        pi = p["batch"] / p["seconds"] if p["seconds"] and p["batch"] and r["key"] != "startup" else None
        note = o["unsupported"] or (o["errors"][0] if o["errors"] and not o["seconds"] else None)
        pnote = p["unsupported"] or (p["errors"][0] if p["errors"] and not p["seconds"] else None)
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["label"], fmt(o["seconds"], ".3f") if not note else "n/a: " + note,
            fmt(p["seconds"], ".3f") if not pnote else "n/a: " + pnote,
            fmt(r["speed_ratio"], ".2f"), fmt(r["best_ratio"], ".2f"), fmt(r["cpu_ratio"], ".2f"), fmt(oi, ".1f"), fmt(pi, ".1f")))
    mem = next((r for r in rows if r["key"] == "train_step_b128"), None)
    if mem:
        lines.append("| peak RSS while training at batch 128 (MiB; ratio ours/peer) | %s | %s | %s | | | | |" % (
            fmt(mem["ours"]["peak_rss_mb"], ".0f"), fmt(mem["peer"]["peak_rss_mb"], ".0f"), fmt(mem["memory_ratio"], ".2f")))
    bf = [r for r in rows if r.get("vs_fp32")]
    if bf:
        lines += ["", "| bf16 autocast vs fp32 (same run) | ddpm-lua fp32 s | ddpm-lua bf16 s | ddpm-lua speed-up "
                  "(fp32/bf16) | peer fp32 s | peer bf16 s | peer speed-up (fp32/bf16) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in bf:
            v = r["vs_fp32"]
            lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                r["label"], fmt(v["ours_fp32_seconds"], ".3f"), fmt(r["ours"]["seconds"], ".3f"),
                fmt(v["ours_speedup"], ".2f"), fmt(v["peer_fp32_seconds"], ".3f"), fmt(r["peer"]["seconds"], ".3f"),
                fmt(v["peer_speedup"], ".2f")))
    return "\n".join(lines)


def write_markdown(result, tbl, path):
    m = result["machine"]
    gflop = None
    tr = next((r for r in result["rows"] if r["key"] == "train_step_b128"), None)
    if tr and tr["ours"]["seconds"]:
        gflop = 2.83 * 128 / tr["ours"]["seconds"]
    pgflop = 2.83 * 128 / tr["peer"]["seconds"] if tr and tr["peer"]["seconds"] else None
    body = [BEGIN, "",
            f"### Latest results ({result['date']}, {result['mode']})", "",
            f"Command: `{result['command']}`  ",
            f"Machine: {m['cpu']}, {m['cpus']} CPUs ({m['threads_per_core']} thread per core, {m['hypervisor'] or 'bare metal'}), "
            f"{m['memory_gib']} GiB, {m['os']}, Linux {m['kernel']}; OpenBLAS {m['openblas']}, LuaJIT {m['luajit']}, "
            f"gcc {m['gcc']}; ddpm-lua {m['ddpm_lua_commit']}.  ",
            f"Peer: {result['peer_versions']}.  ",
            f"Threads: {result['threads']} for both (peer: torch.set_num_threads({result['threads']}), OPENBLAS_NUM_THREADS=1; "
            f"ddpm-lua: ddpm.set_num_threads({result['threads']})){'; environment of both: ' + ', '.join(result['env']) if result.get('env') else ''}. Repetitions: {result['reps']} processes per side, alternating.  ",
            f"Load average before/after: {result['load_before']} / {result['load_after']} (a shared machine: other work was running).", "",
            tbl, ""]
    spread = ["Per-process seconds (the spread shows the machine's load):"]
    for r in result["rows"]:
        o, p = r["ours"]["per_process_seconds"], r["peer"]["per_process_seconds"]
        if o or p:
            spread.append(f"{r['key']}: ddpm-lua {', '.join('%.3g' % v for v in o) or '-'}; "
                          f"peer {', '.join('%.3g' % v for v in p) or '-'}.")
    body += [" ".join(spread), ""]
    if gflop:
        body.append(f"Training throughput at batch 128 (2.83 GFLOP per image): ddpm-lua {gflop:.1f} GFLOP/s, "
                    f"peer {fmt(pgflop, '.1f')} GFLOP/s.")
        body.append("")
    body.append(f"Raw numbers: `docs/benchmarks/{os.path.basename(result['json_path'])}`.")
    body += ["", END]
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN), text.index(END) + len(END)
        text = text[:a] + "\n".join(body) + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(body) + "\n"
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 repetition, fewer timed steps")
    ap.add_argument("--reps", type=int, default=None, help="processes per side and measurement (default 3; 1 with --quick)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--only", default="", help="comma-separated keys or script names (e.g. train_step,startup)")
    ap.add_argument("--ours-only", action="store_true", help="skip the peer (no ratios)")
    ap.add_argument("--bf16", action="store_true",
                    help="add the bf16 autocast rows (train_step_bf16_b128, sample_step_bf16_b20) and their fp32 rows")
    ap.add_argument("--ddpm-lua", default=os.path.join(ROOT, "build", "ddpm-lua"))
    ap.add_argument("--peer-python", default=os.path.join(PEER, ".venv", "bin", "python"))
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per process")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="set in the environment of both sides (e.g. OMP_WAIT_POLICY=passive); repeatable")
    ap.add_argument("--no-write", action="store_true", help="print only; write no files")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks"))
    ap.add_argument("--render", metavar="RESULTS_JSON",
                    help="recompute the table of a saved run and rewrite docs/BENCHMARKS.md's latest section from it")
    opts = ap.parse_args()
    if opts.render:
        return render(opts.render)
    reps = opts.reps or (1 if opts.quick else 3)
    if not os.access(opts.ddpm_lua, os.X_OK):
        sys.exit(f"run.py: {opts.ddpm_lua} not found; build first: cmake -S . -B build && cmake --build build -j2")
    if not opts.ours_only and not os.access(opts.peer_python, os.X_OK):
        sys.exit(f"run.py: the peer is not installed ({opts.peer_python}); run tests/peer/install.sh or pass --ours-only")
    only = [s for s in opts.only.split(",") if s]
    todo = select(measurements(opts.quick), only, opts.bf16)
    impls = ["ours"] if opts.ours_only else ["ours", "peer"]
    command = " ".join(["scripts/bench/run.sh"] + [shlex.quote(a) for a in sys.argv[1:]])
    load_before = loadavg()
    print(f"# {command}: {len(todo)} measurements x {reps} repetitions x {len(impls)} implementations, "
          f"{opts.threads} threads; load average {load_before}", flush=True)
    runs = {m[0]: {"ours": [], "peer": []} for m in todo}
    for rep in range(reps):
        for key, label, stem, args in todo:
            order = impls if rep % 2 == 0 else impls[::-1]
            for impl in order:
                t0 = time.time()
                rec = run_one(impl, stem, args, opts)
                runs[key][impl].append(rec)
                what = rec.get("error") or rec.get("unsupported") or "%.3f s (peak RSS %.0f MiB)" % (
                    rec["seconds"], rec.get("peak_rss_mb") or 0)
                print(f"  rep {rep + 1}/{reps} {key:<22} {impl:<4} {what}   [{time.time() - t0:.0f} s wall]", flush=True)
    rows = add_vs_fp32([summarize(key, label, runs[key]) for key, label, _, _ in todo])
    tbl = table(rows)
    print()
    print(tbl)
    peer_v = next((r["peer"]["versions"] for r in rows if r["peer"]["versions"]), None) or {}
    date = datetime.date.today().isoformat()
    result = {
        "date": date, "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "mode": ("quick, " if opts.quick else "") + f"{reps} repetition(s)",
        "command": command, "reps": reps, "threads": opts.threads, "env": opts.env, "machine": machine(),
        "load_before": load_before, "load_after": loadavg(),
        "peer_versions": ", ".join(f"{k} {v}" for k, v in peer_v.items() if k != "impl") or "not run",
        "ratios": "speed = peer seconds / ddpm-lua seconds (>1: ddpm-lua faster); memory = ddpm-lua / peer peak RSS",
        "rows": rows, "raw": runs,
    }
    if opts.no_write:
        return
    os.makedirs(opts.out, exist_ok=True)
    path, n = os.path.join(opts.out, f"results-{date}.json"), 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(opts.out, f"results-{date}-{n}.json")
    result["json_path"] = path
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    write_markdown(result, tbl, os.path.join(ROOT, "docs", "BENCHMARKS.md"))
    print(f"\nwrote {os.path.relpath(path, ROOT)} and docs/BENCHMARKS.md")


def render(path):
    result = json.load(open(path))
    labels = {m[0]: m[1] for m in measurements(False)}
    result["rows"] = add_vs_fp32([summarize(key, labels.get(key, key), runs) for key, runs in result["raw"].items()])
    result["json_path"] = path
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    tbl = table(result["rows"])
    print(tbl)
    write_markdown(result, tbl, os.path.join(ROOT, "docs", "BENCHMARKS.md"))


if __name__ == "__main__":
    main()
