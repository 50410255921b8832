#!/usr/bin/env python3
"""Batch-1 decode speed of `qrag-run` per --quant beside llama.cpp's on the same GGUF file, same threads.

usage: decode_vs_llamacpp.py --model M.gguf [--qrag-run build/server/tools/qrag-run] [--quants fp32,int8,w4]
                             [--tokens 128] [--repeats 3] [--threads 2]

Needs llama-cpp-python and numpy (e.g. /work/venv-gguf/bin/python). qrag: `qrag-run --prompt "Once upon a
time" --max-tokens N --temperature 0.8 --seed 3` (sampled, so that no end-of-text token stops it early), the
"generated ... tok/s" it prints (decode only, prefill excluded). llama.cpp: the same prompt evaluated, then N
single-token evals of the argmax token (decode only; the argmax over the logits is in numpy and included).
Each figure is the best of --repeats runs, taken one after the other (no two runs at once); a shared machine
makes them noisy, so compare figures of one invocation.
"""
import argparse
import os
import re
import subprocess
import sys
import time

PROMPT = "Once upon a time"


def llamacpp_decode(model, tokens, threads):
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    llm.reset()
    llm.eval(llm.tokenize(PROMPT.encode(), add_bos=False))
    start = time.time()
    for _ in range(tokens):
        llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
    return tokens / (time.time() - start)


def qrag_decode(binary, model, run, tokens, threads):
    quant, *extra = run.split()
    cmd = [binary, "--model", model, "--quant", quant, *extra, "--device", "cpu", "--threads", str(threads),
           "--prompt", PROMPT, "--max-tokens", str(tokens), "--temperature", "0.8", "--seed", "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr}")
    return float(re.search(r"generated \d+ tokens in [0-9.]+ s: ([0-9.]+) tok/s", proc.stderr).group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--qrag-run", default=os.path.join("build", "server", "tools", "qrag-run"))
    ap.add_argument("--quants", default="fp32,int8,w4",
                    help="comma-separated qrag runs: a --quant value, optionally followed by more qrag-run flags")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    rows = [("llama.cpp (GGUF as stored)",
             max(llamacpp_decode(args.model, args.tokens, args.threads) for _ in range(args.repeats)))]
    for run in [q.strip() for q in args.quants.split(",") if q.strip()]:
        rows.append((f"qrag --quant {run}", max(qrag_decode(args.qrag_run, args.model, run, args.tokens, args.threads)
                                                for _ in range(args.repeats))))
    print(f"model {os.path.basename(args.model)}, {args.tokens} decode tokens, {args.threads} threads, "
          f"best of {args.repeats}\n")
    print("| run | decode tokens/s | vs llama.cpp |")
    print("|---|---:|---:|")
    for name, tps in rows:
        print(f"| {name} | {tps:.1f} | {tps / rows[0][1]:.2f}x |")


if __name__ == "__main__":
    main()
