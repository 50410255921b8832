#!/usr/bin/env python3
"""qrag's perplexity (`qrag-run --perplexity`) beside llama.cpp's on the same GGUF model and text.

usage: perplexity_vs_llamacpp.py --model M.gguf --text FILE [--ctx 512] [--qrag-run build/server/tools/qrag-run]
                                 [--quants "fp32,bf16,fp8,int8,w4,w4 --w4-grid symmetric"] [--threads 2]

Needs numpy and llama-cpp-python (e.g. /work/venv-gguf/bin/python, or `python3 -m venv v && v/bin/pip install
numpy llama-cpp-python`). llama.cpp's side uses the definition of server/engine/perplexity.h, computed here
from llama.cpp's logits: the text tokenized without BOS (llama.cpp's tokenizer), consecutive windows of --ctx
tokens (a final partial window dropped, as llama.cpp's own `perplexity` tool drops it), each window evaluated
from position 0 in a fresh KV cache, every token after a window's first scored:
nll = logsumexp(logits) - logits[token] in float64. (llama.cpp's `perplexity` tool itself scores only the second
half of each window; this script scores all of it, as qrag does.)

qrag runs one process per --quants entry, one after the other. Prints a Markdown table; the qrag rows give the
relative difference of their perplexity from llama.cpp's.
"""
import argparse
import os
import re
import subprocess
import sys
import time


def llamacpp_perplexity(model, text, ctx, threads):
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, logits_all=True, n_threads=threads,
                verbose=False)
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    windows = len(tokens) // ctx
    if windows == 0:
        sys.exit(f"the text has {len(tokens)} tokens, fewer than one window of {ctx}")
    total = 0.0
    start = time.time()
    for w in range(windows):
        win = tokens[w * ctx:(w + 1) * ctx]
        llm.reset()
        llm.eval(win)
        logits = np.asarray(llm.scores[:ctx - 1], dtype=np.float64)  # row i predicts win[i + 1]
        m = logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(logits - m).sum(axis=1)) + m[:, 0]
        total += float((lse - logits[np.arange(ctx - 1), win[1:]]).sum())
    seconds = time.time() - start
    scored = windows * (ctx - 1)
    mean = total / scored
    return {"tokens": len(tokens), "scored": scored, "mean_nll": mean, "ppl": float(np.exp(mean)),
            "tok_s": windows * ctx / seconds}


def qrag_perplexity(binary, model, text_file, ctx, run, threads):
    quant, *extra = run.split()
    cmd = [binary, "--model", model, "--quant", quant, *extra, "--device", "cpu", "--perplexity", text_file,
           "--ctx", str(ctx)]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr}")
    ppl = re.search(r"perplexity: ([0-9.]+) over (\d+) tokens", proc.stdout)
    nll = re.search(r"mean nll: ([0-9.]+)", proc.stdout)
    toks = re.search(r": (\d+) tokens, \d+ windows", proc.stderr)
    speed = re.search(r"([0-9.]+) tok/s", proc.stderr)
    return {"tokens": int(toks.group(1)), "scored": int(ppl.group(2)), "mean_nll": float(nll.group(1)),
            "ppl": float(ppl.group(1)), "tok_s": float(speed.group(1)), "cmd": " ".join(cmd)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--qrag-run", default=os.path.join("build", "server", "tools", "qrag-run"))
    ap.add_argument("--quants", default="fp32,bf16,fp8,int8,w4",
                    help="comma-separated qrag runs: a --quant value, optionally followed by more qrag-run flags "
                         "(e.g. 'w4 --w4-grid symmetric --classifier-quant w4')")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    with open(args.text, encoding="utf-8") as f:
        text = f.read()

    ref = llamacpp_perplexity(args.model, text, args.ctx, args.threads)
    rows = [("llama.cpp (GGUF as stored)", ref)]
    for run in [q.strip() for q in args.quants.split(",") if q.strip()]:
        rows.append((f"qrag --quant {run}", qrag_perplexity(args.qrag_run, args.model, args.text, args.ctx, run,
                                                            args.threads)))
    print(f"model {os.path.basename(args.model)}, text {os.path.basename(args.text)}, window {args.ctx}\n")
    print("| run | text tokens | scored | mean NLL (nats) | perplexity | vs llama.cpp | tokens/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows:
        rel = "" if r is ref else f"{100 * (r['ppl'] / ref['ppl'] - 1):+.2f}%"
        print(f"| {name} | {r['tokens']} | {r['scored']} | {r['mean_nll']:.6f} | {r['ppl']:.4f} | {rel} | "
              f"{r['tok_s']:.0f} |")
    for name, r in rows[1:]:
        if r["tokens"] != ref["tokens"]:
            print(f"warning: {name} tokenized the text into {r['tokens']} tokens, llama.cpp into {ref['tokens']}",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
