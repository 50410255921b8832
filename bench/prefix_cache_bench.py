#!/usr/bin/env python3
"""The prefix cache, on vs off, side by side in one run (qrag-server --prefix-cache on|off, the same model,
threads and requests):

  1. chat:   a 10-turn conversation (bench/chat_ttft.py's turns), greedy, 64 tokens per answer, each turn
             resending the whole history: time to first token per turn (the server's own
             timings.time_to_first_token_seconds), prompt tokens and cached prompt tokens. The answers must be
             the same with the cache on and off (the script stops if not).
  2. shared: a shared system prompt of ~1,500 tokens, then 16 clients at once, each with its own question
             (ChatStream, greedy, 16 tokens): prompt tokens computed (prompt - cached, summed), TTFT p50/p99
             and the wall time of the whole burst.

usage: python3 bench/prefix_cache_bench.py --server-bin build/server/tools/qrag-server \
           --model ~/.cache/qrag/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf [--threads 2] [--json]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qrag_stubs  # noqa: E402
from chat_ttft import TURNS  # noqa: E402

SYSTEM = ("You are the support assistant of a company that builds inference servers. Follow these rules. " +
          " ".join(f"Rule {i}: answer politely, cite the manual section {i}, keep answers short, never invent "
                   f"prices, and escalate billing questions about plan {i} to a human." for i in range(1, 61)))
QUESTIONS = [f"Question {i}: how do I change the setting number {i} of my deployment?" for i in range(16)]


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


class Server:
    def __init__(self, a, prefix_cache):
        self.proc = subprocess.Popen([a.server_bin, "--model", a.model, "--threads", str(a.threads), "--listen",
                                      "127.0.0.1:0", "--prefix-cache", prefix_cache, "--energy-meter", "none"],
                                     stderr=subprocess.PIPE, text=True)
        addr = None
        for line in self.proc.stderr:
            if "listening on " in line:
                addr = line.split("listening on ", 1)[1].strip()
                break
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        self.stub = a.pbg.InferenceStub(a.grpc.insecure_channel(addr))
        while True:
            try:
                self.stub.GetModelInfo(a.pb.GetModelInfoRequest(), timeout=5)
                break
            except a.grpc.RpcError:
                time.sleep(0.5)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def chat_stream(a, stub, messages, max_tokens):
    req = a.pb.ChatRequest(messages=[a.pb.ChatMessage(**m) for m in messages], temperature=0, max_tokens=max_tokens)
    answer, last = "", None
    for m in stub.ChatStream(req, timeout=900):
        answer += m.text
        last = m
    return answer, last


def run_chat(a, stub):
    history, rows = [], []
    for turn, text in enumerate(TURNS, 1):
        history.append({"role": "user", "content": text})
        answer, last = chat_stream(a, stub, history, 64)
        rows.append({"turn": turn, "prompt": last.usage.prompt_tokens, "cached": last.usage.cached_prompt_tokens,
                     "ttft": last.timings.time_to_first_token_seconds, "answer": answer})
        history.append({"role": "assistant", "content": answer})
    return rows


def run_shared(a, stub):
    results = [None] * len(QUESTIONS)

    def one(i):
        results[i] = chat_stream(a, stub, [{"role": "system", "content": SYSTEM},
                                           {"role": "user", "content": QUESTIONS[i]}], 16)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(QUESTIONS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttfts = [r[1].timings.time_to_first_token_seconds for r in results]
    return {"prompt_tokens": sum(r[1].usage.prompt_tokens for r in results),
            "computed": sum(r[1].usage.prompt_tokens - r[1].usage.cached_prompt_tokens for r in results),
            "ttft_p50": statistics.median(ttfts), "ttft_p99": percentile(ttfts, 0.99), "wall": wall,
            "answers": [r[0] for r in results]}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser()
    p.add_argument("--server-bin", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument("--proto-dir", default=os.path.join(here, "..", "proto"))
    a = p.parse_args()
    tmp, grpc, pb, pbg = qrag_stubs.generate(a.proto_dir)
    a.grpc, a.pb, a.pbg = grpc, pb, pbg

    out = {}
    for mode in ("off", "on"):
        s = Server(a, mode)
        try:
            out[mode] = {"chat": run_chat(a, s.stub), "shared": run_shared(a, s.stub)}
        finally:
            s.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    for off, on in zip(out["off"]["chat"], out["on"]["chat"]):
        if off["answer"] != on["answer"]:
            raise SystemExit(f"turn {off['turn']}: the answers differ with the cache on and off")
    if out["off"]["shared"]["answers"] != out["on"]["shared"]["answers"]:
        raise SystemExit("shared system prompt: the answers differ with the cache on and off")
    if a.json:
        print(json.dumps(out, indent=2))
        return
    print("10-turn chat (answers identical with the cache on and off):")
    print("| turn | prompt tokens | cached (on) | TTFT off | TTFT on | on ÷ off |")
    print("|---:|---:|---:|---:|---:|---:|")
    for off, on in zip(out["off"]["chat"], out["on"]["chat"]):
        print(f"| {off['turn']} | {off['prompt']} | {on['cached']} | {off['ttft'] * 1000:.0f} ms | "
              f"{on['ttft'] * 1000:.0f} ms | {on['ttft'] / off['ttft']:.2f} |")
    print()
    print(f"shared system prompt, {len(QUESTIONS)} concurrent clients (answers identical):")
    print("| prefix cache | prompt tokens | computed | TTFT p50 | TTFT p99 | burst wall time |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode in ("off", "on"):
        r = out[mode]["shared"]
        print(f"| {mode} | {r['prompt_tokens']} | {r['computed']} | {r['ttft_p50']:.2f} s | {r['ttft_p99']:.2f} s | "
              f"{r['wall']:.1f} s |")


if __name__ == "__main__":
    main()
