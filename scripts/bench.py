"""Side-by-side benchmark: llama.cpp (llama-cpp-python's build) and `hearth bench` on the same GGUF files, same
threads, interleaved in one run. Prints a markdown table of medians and Hearth/llama.cpp ratios.

usage: bench.py HEARTH_BIN MODELS_DIR [--reps N] [--threads 1,2] [--models a.gguf,b.gguf] [--pp 512] [--tg 128]
                [--depth 0] [--batches 1,4,8] [--json OUT]

A model is a file in MODELS_DIR, or `synth:llama-1b-q4_k_m` (preset 1b/3b/8b, type q4_k_m/q4_0/q8_0/q6_k): a
random-weight Llama 3 file at that real shape, written once by `hearth model synth llama` into $HEARTH_SYNTH_DIR
(default ~/.cache/hearth/synth) and reused. `--depth N`: generation is measured after an N-token prompt in the same
sequence (llama-bench's -d), on both sides.
"""
import os
import re
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


def model_path(hearth, models_dir, name):
    """A demo model's file, or a synthetic one (written on first use)."""
    m = re.fullmatch(r"synth:llama-(1b|3b|8b|tiny)-(q4_k_m|q4_0|q8_0|q6_k)", name)
    if not m:
        if name.startswith("synth:"):
            sys.exit(f"bench.py: unknown synthetic model {name} (synth:llama-{{1b,3b,8b}}-{{q4_k_m,q4_0,q8_0,q6_k}})")
        return Path(models_dir) / name
    d = Path(os.environ.get("HEARTH_SYNTH_DIR", Path.home() / ".cache/hearth/synth"))
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"llama-{m[1]}-{m[2]}.gguf"
    if not path.exists():
        subprocess.run([hearth, "model", "synth", "llama", "--preset", m[1], "--type", m[2], "--out", str(path)],
                       check=True, stdout=sys.stderr)
    return path


def peer_run(path, threads, pp, tg, depth):
    """One llama.cpp measurement in a subprocess (fresh process → honest peak RSS)."""
    code = f"""
import json, random, resource, time
from llama_cpp import Llama
llm = Llama({str(path)!r}, n_ctx={max(pp, depth) + tg + 16}, n_batch={pp}, n_ubatch={pp}, n_threads={threads},
            n_threads_batch={threads}, verbose=False, logits_all=False)
n_vocab = llm.n_vocab()
rnd = random.Random(0)
toks = [rnd.randrange(1000, n_vocab) for _ in range({max(pp, depth)})]
llm.eval(toks[:16]); llm.reset()  # warm-up
t = time.perf_counter(); llm.eval(toks[:{pp}]); pp_s = {pp} / (time.perf_counter() - t)
llm.reset(); llm.eval(toks[:{max(depth, 1)}])
t = time.perf_counter()
for i in range({tg}):
    llm.eval([toks[i % {pp}]])
tg_s = {tg} / (time.perf_counter() - t)
print(json.dumps({{"pp": pp_s, "tg": tg_s, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def hearth_run(binary, path, threads, pp, tg, batches, depth):
    cmd = [binary, "bench", str(path), "--threads", str(threads), "--prompt-tokens", str(pp), "--gen-tokens", str(tg),
           "--batch", ",".join(map(str, batches)), "--depth", str(depth), "--repetitions", "1", "--json"]
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
    ap.add_argument("--depth", type=int, default=0)
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--json")
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    rows = []
    for model in a.models.split(","):
        path = model_path(a.hearth, a.models_dir, model)
        for threads in [int(t) for t in a.threads.split(",")]:
            peer, ours = [], []
            for _ in range(a.reps):  # interleaved: both sides see the same machine weather
                peer.append(peer_run(path, threads, a.pp, a.tg, a.depth))
                ours.append(hearth_run(a.hearth, path, threads, a.pp, a.tg, batches, a.depth))
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
    tg = f"tg{a.tg}" + (f" @ d{a.depth}" if a.depth else "")
    print(f"| model | threads | llama.cpp pp{a.pp} | Hearth pp{a.pp} | ratio | llama.cpp {tg} | Hearth {tg} | ratio "
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
