"""Side-by-side benchmark: llama.cpp (llama-cpp-python's build) and `hearth bench` on the same GGUF files, same
threads, interleaved in one run. Prints a markdown table of medians and Hearth/llama.cpp ratios.

usage: bench.py HEARTH_BIN MODELS_DIR [--reps N] [--threads 1,2] [--models a.gguf,b.gguf] [--json OUT]
"""
import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import llama_cpp
from llama_cpp import Llama

DEFAULT_MODELS = ["SmolLM2-135M-Instruct-Q4_1.gguf", "gemma-3-270m-Q4_K_M.gguf"]


def peer_run(path, threads, pp, tg):
    """One llama.cpp measurement in a subprocess (fresh process → honest peak RSS)."""
    code = f"""
import json, random, resource, time
from llama_cpp import Llama
llm = Llama({str(path)!r}, n_ctx={pp + tg + 16}, n_batch={pp}, n_ubatch={pp}, n_threads={threads},
            n_threads_batch={threads}, verbose=False, logits_all=False)
n_vocab = llm.n_vocab()
rnd = random.Random(0)
toks = [rnd.randrange(1000, n_vocab) for _ in range({pp})]
llm.eval(toks[:16]); llm.reset()  # warm-up
t = time.perf_counter(); llm.eval(toks); pp_s = {pp} / (time.perf_counter() - t)
llm.reset(); llm.eval([toks[0]])
t = time.perf_counter()
for i in range({tg}):
    llm.eval([toks[i % {pp}]])
tg_s = {tg} / (time.perf_counter() - t)
print(json.dumps({{"pp": pp_s, "tg": tg_s, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def hearth_run(binary, path, threads, pp, tg, batches):
    cmd = [binary, "bench", str(path), "--threads", str(threads), "--prompt-tokens", str(pp), "--gen-tokens", str(tg),
           "--batch", ",".join(map(str, batches)), "--repetitions", "1", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {"pp": r["pp_tokens_per_s"], "tg": r["tg_tokens_per_s"], "rss": r["peak_rss_bytes"],
            "batches": {b["batch"]: b["tokens_per_s"] for b in r["batches"]}, "isa": r["isa"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hearth")
    ap.add_argument("models_dir")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--pp", type=int, default=512)
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--json")
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    rows = []
    for model in a.models.split(","):
        path = Path(a.models_dir) / model
        for threads in [int(t) for t in a.threads.split(",")]:
            peer, ours = [], []
            for _ in range(a.reps):  # interleaved: both sides see the same machine weather
                peer.append(peer_run(path, threads, a.pp, a.tg))
                ours.append(hearth_run(a.hearth, path, threads, a.pp, a.tg, batches))
            med = lambda xs, k: statistics.median(x[k] for x in xs)
            row = {
                "model": model, "threads": threads,
                "peer_pp": med(peer, "pp"), "peer_tg": med(peer, "tg"), "peer_rss": max(x["rss"] for x in peer),
                "pp": med(ours, "pp"), "tg": med(ours, "tg"), "rss": max(x["rss"] or 0 for x in ours),
                "batches": {b: statistics.median(x["batches"][b] for x in ours) for b in batches},
                "isa": ours[0]["isa"],
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"| model | threads | llama.cpp pp{a.pp} | Hearth pp{a.pp} | ratio | llama.cpp tg{a.tg} | Hearth tg{a.tg} | ratio "
          f"| Hearth batch {'/'.join(map(str, batches))} aggregate tg | peak RSS llama.cpp / Hearth (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        agg = " / ".join(f"{r['batches'][b]:.0f}" for b in batches)
        print(f"| {r['model']} | {r['threads']} | {r['peer_pp']:.1f} | {r['pp']:.1f} | **{r['pp'] / r['peer_pp']:.2f}x** "
              f"| {r['peer_tg']:.1f} | {r['tg']:.1f} | **{r['tg'] / r['peer_tg']:.2f}x** | {agg} "
              f"| {r['peer_rss'] / 2**20:.0f} / {r['rss'] / 2**20:.0f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
