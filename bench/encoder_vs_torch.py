#!/usr/bin/env python3
"""all-MiniLM-L6-v2 encoder throughput, qrag against PyTorch on the same cores, side by side in one run.

The same documents (the first --docs of BEIR SciFact, title + " " + text, truncated to 256 tokens as MTEB does)
are embedded by
  - qrag's BertEncoder (build/bench/rag_bench: packed sequences, one Embed call per 256 documents) in fp32 with
    OpenBLAS GEMMs (what the server's RAG uses), fp32 with the batch-invariant kernels, int8 (oneDNN's VNNI
    GEMMs) and fp8 (qrag's own kernels);
  - PyTorch (transformers' BertModel, mean pooling + L2 normalization as sentence-transformers does, fp32,
    torch.inference_mode, batches of 32 sorted by length to limit padding), with torch.set_num_threads(T),
interleaved: every engine runs once per round, --rounds rounds, and the median of each is reported.

PyTorch comes from PyPI into its own virtual environment (${QRAG_CACHE_DIR:-~/.cache/qrag}/venv-torch, made on the
first run; CI never runs this script), or --torch-python PATH names an interpreter that has torch and
transformers.

usage: python3 bench/encoder_vs_torch.py --rag-bench build/bench/rag_bench \
           --model ~/.cache/qrag/all-MiniLM-L6-v2 [--docs 300] [--threads 2] [--rounds 3] [--torch-python PY]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

TORCH_SCRIPT = r"""
import json, sys, time
import torch
from transformers import AutoModel, AutoTokenizer
model_dir, corpus, docs, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
texts = []
with open(corpus, encoding="utf-8") as f:
    for line in f:
        d = json.loads(line)
        texts.append((d["title"] + " " + d["text"]).strip())
        if len(texts) == docs:
            break
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModel.from_pretrained(model_dir).eval()
enc = [tok(t, truncation=True, max_length=256)["input_ids"] for t in texts]
tokens = sum(len(e) for e in enc)
order = sorted(range(len(texts)), key=lambda i: len(enc[i]))
with torch.inference_mode():
    model(**tok(texts[:2], padding=True, truncation=True, max_length=256, return_tensors="pt"))  # warm-up
    t0 = time.perf_counter()
    for b in range(0, len(order), 32):
        batch = [texts[i] for i in order[b:b + 32]]
        x = tok(batch, padding=True, truncation=True, max_length=256, return_tensors="pt")
        h = model(**x).last_hidden_state
        m = x["attention_mask"].unsqueeze(-1).to(h.dtype)
        e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    seconds = time.perf_counter() - t0
print(json.dumps({"docs": len(texts), "tokens": tokens, "seconds": seconds, "torch": torch.__version__,
                  "threads": torch.get_num_threads()}))
"""


def torch_python(a):
    if a.torch_python:
        return a.torch_python
    venv = os.path.join(os.environ.get("QRAG_CACHE_DIR", os.path.expanduser("~/.cache/qrag")), "venv-torch")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "--index-url", "https://download.pytorch.org/whl/cpu",
                        "torch"], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "transformers"], check=True)
    return py


def run_qrag(a, quant, gemm):
    out = subprocess.run([a.rag_bench, "--model", a.model, "--shared", a.shared, "--docs", str(a.docs), "--quant",
                          quant, "--gemm", gemm, "--threads", str(a.threads)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"encode: (\d+) docs, (\d+) tokens in ([\d.]+) s", out)
    if m is None:
        raise SystemExit(f"rag_bench printed no encode line:\n{out}")
    return {"docs": int(m.group(1)), "tokens": int(m.group(2)), "seconds": float(m.group(3))}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rag-bench", required=True)
    p.add_argument("--model", required=True, help="the all-MiniLM-L6-v2 directory (tests/fetch_minilm.sh)")
    p.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    p.add_argument("--docs", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--torch-python", default=None)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    py = torch_python(a)
    corpus = os.path.join(a.shared, "data", "scifact", "corpus.jsonl")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(TORCH_SCRIPT)
        script = f.name
    engines = {
        "qrag fp32 (OpenBLAS GEMMs)": lambda: run_qrag(a, "fp32", "blas"),
        "qrag fp32 (batch-invariant GEMMs)": lambda: run_qrag(a, "fp32", "canonical"),
        "qrag int8 (oneDNN VNNI GEMMs)": lambda: run_qrag(a, "int8", "blas"),
        "qrag fp8": lambda: run_qrag(a, "fp8", "blas"),
        "PyTorch fp32": lambda: json.loads(subprocess.run(
            [py, script, a.model, corpus, str(a.docs), str(a.threads)], capture_output=True, text=True,
            check=True).stdout.strip().splitlines()[-1]),
    }
    runs = {k: [] for k in engines}
    try:
        for _ in range(a.rounds):
            for name, fn in engines.items():
                runs[name].append(fn())
    finally:
        os.unlink(script)
    rows = {}
    for name, rs in runs.items():
        secs = statistics.median(r["seconds"] for r in rs)
        rows[name] = {"docs": rs[0]["docs"], "tokens": rs[0]["tokens"], "seconds": secs,
                      "docs_per_s": rs[0]["docs"] / secs, "tokens_per_s": rs[0]["tokens"] / secs,
                      "all_seconds": [r["seconds"] for r in rs]}
    base = rows["PyTorch fp32"]["docs_per_s"]
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{a.docs} SciFact documents, {a.threads} threads, median of {a.rounds} interleaved rounds")
    print("| encoder | docs/s | tokens/s | ÷ PyTorch fp32 |")
    print("|---|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['docs_per_s']:.1f} | {r['tokens_per_s']:.0f} | {r['docs_per_s'] / base:.2f} |")


if __name__ == "__main__":
    main()
