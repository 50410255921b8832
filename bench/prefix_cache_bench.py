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
  3. rag:    (with --embedder) the RAG prefix hit rate, passages in rank order vs canonical order
             (RagOptions.passage_order), the cache on in both: the State of the Union ingested one paragraph
             per document; two workloads of 60 questions from 20 paragraphs (rag_workloads: related
             questions, and one question rephrased three ways), shuffled; Generate with rag top_k 3, greedy,
             1 token, one client. Hit rate = cached prompt tokens / prompt tokens, summed; also TTFT p50 and
             the cache-off figure.

usage: python3 bench/prefix_cache_bench.py --server-bin build/server/tools/qrag-server \
           --model ~/.cache/qrag/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf [--threads 2] [--json] \
           [--embedder ~/.cache/qrag/all-MiniLM-L6-v2] [--scenarios chat,shared,rag]
"""
import argparse
import json
import os
import random
import re
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
                   f"prices, and escalate billing questions about plan {i} to a human." for i in range(1, 41)))
QUESTIONS = [f"Question {i}: how do I change the setting number {i} of my deployment?" for i in range(16)]


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


SOTU = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "rag",
                    "state_of_the_union.txt")


class Server:
    def __init__(self, a, prefix_cache, *extra):
        self.proc = subprocess.Popen([a.server_bin, "--model", a.model, "--threads", str(a.threads), "--listen",
                                      "127.0.0.1:0", "--prefix-cache", prefix_cache, "--energy-meter", "none",
                                      *extra], stderr=subprocess.PIPE, text=True)
        addr = None
        for line in self.proc.stderr:
            if "listening on " in line:
                addr = line.split("listening on ", 1)[1].strip()
                break
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        self.channel = a.grpc.insecure_channel(addr)
        self.stub = a.pbg.InferenceStub(self.channel)
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


def rag_workloads(sotu):
    """(documents {id: paragraph}, {workload: questions}). One document per paragraph of the State of the Union;
    from each of the first 20 paragraphs of at least three sentences:
      related:   its first three sentences, each asked as a question (related questions, often different
                 passage sets that share the best passage);
      rephrased: its first sentence in three phrasings (the same question reworded: often the same passages in
                 another rank order).
    Each workload shuffled with a fixed seed."""
    with open(sotu, encoding="utf-8") as f:
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", f.read()) if len(p.strip()) > 40]
    docs = {f"p{i:03d}": p for i, p in enumerate(paragraphs)}
    split = [re.split(r"(?<=[.!?])\s+", p) for p in paragraphs]
    eligible = [s for s in split if len(s) >= 3][:20]
    related, rephrased = [], []
    for sentences in eligible:
        related += [s.rstrip(".!?") + "?" for s in sentences[:3]]
        first = sentences[0].rstrip(".!?")
        rephrased += [first + "?", "Can you explain this: " + first[0].lower() + first[1:] + "?",
                      "I read that " + first[0].lower() + first[1:] + ". What does it mean?"]
    random.Random(0).shuffle(related)
    random.Random(1).shuffle(rephrased)
    return docs, {"related": related, "rephrased": rephrased}


def run_rag(a, server, questions, order):
    rows = []
    for q in questions:
        req = a.pb.GenerateRequest(prompt=q, max_tokens=1, temperature=0)
        req.rag.collection = "sotu"
        req.rag.top_k = 3
        req.rag.passage_order = order
        r = server.stub.Generate(req, timeout=900)
        rows.append((r.usage.prompt_tokens, r.usage.cached_prompt_tokens, r.timings.time_to_first_token_seconds,
                     tuple(sorted(p.document_id for p in r.passages))))
    prompt = sum(x[0] for x in rows)
    cached = sum(x[1] for x in rows)
    return {"prompt_tokens": prompt, "cached": cached, "hit_rate": cached / prompt,
            "ttft_p50": statistics.median(x[2] for x in rows), "sets": [x[3] for x in rows]}


def rag_scenario(a):
    """Per workload: the cache off, then on with rank order, then on with canonical order, each on a fresh
    server over the same data directory (the first one ingests)."""
    from qrag.v1 import retrieval_pb2 as rpb, retrieval_pb2_grpc as rgrpc
    docs, workloads = rag_workloads(a.sotu)
    data = os.path.join(a.tmp, "rag-data")
    out = {"documents": len(docs), "workloads": {}}
    for workload, questions in workloads.items():
        runs = {}
        for name, cache, order in (("cache off", "off", rpb.PASSAGE_ORDER_RANK),
                                   ("rank order", "on", rpb.PASSAGE_ORDER_RANK),
                                   ("canonical order", "on", rpb.PASSAGE_ORDER_CANONICAL)):
            s = Server(a, cache, "--embedder", a.embedder, "--data-dir", data)
            try:
                if not os.path.exists(os.path.join(data, "ingested")):
                    r = rgrpc.RetrievalStub(s.channel)
                    r.CreateCollection(rpb.CreateCollectionRequest(name="sotu"), timeout=60)
                    items = list(docs.items())
                    reqs = [rpb.IngestRequest(collection="sotu" if i == 0 else "",
                                              documents=[rpb.Document(id=k, text=v) for k, v in items[i:i + 16]])
                            for i in range(0, len(items), 16)]
                    list(r.Ingest(iter(reqs), timeout=1800))
                    open(os.path.join(data, "ingested"), "w").close()
                runs[name] = run_rag(a, s, questions, order)
            finally:
                s.stop()
        out["workloads"][workload] = {"questions": len(questions),
                                      "distinct_passage_sets": len(set(runs["canonical order"]["sets"])),
                                      "runs": runs}
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser()
    p.add_argument("--server-bin", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument("--proto-dir", default=os.path.join(here, "..", "proto"))
    p.add_argument("--embedder", help="a sentence-transformers directory (all-MiniLM-L6-v2): the rag scenario")
    p.add_argument("--sotu", default=SOTU, help="the State of the Union text (../shared/data/rag)")
    p.add_argument("--scenarios", default="chat,shared,rag")
    a = p.parse_args()
    scenarios = set(a.scenarios.split(","))
    if "rag" in scenarios and not a.embedder:
        scenarios.discard("rag")
        print("(rag scenario skipped: no --embedder)", file=sys.stderr)
    tmp, grpc, pb, pbg = qrag_stubs.generate(a.proto_dir)
    a.grpc, a.pb, a.pbg, a.tmp = grpc, pb, pbg, tmp

    out = {}
    try:
        for mode in ("off", "on"):
            if not scenarios & {"chat", "shared"}:
                break
            s = Server(a, mode)
            try:
                out[mode] = {k: (run_chat if k == "chat" else run_shared)(a, s.stub)
                             for k in ("chat", "shared") if k in scenarios}
            finally:
                s.stop()
        if "rag" in scenarios:
            out["rag"] = rag_scenario(a)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if "chat" in scenarios:
        for off, on in zip(out["off"]["chat"], out["on"]["chat"]):
            if off["answer"] != on["answer"]:
                raise SystemExit(f"turn {off['turn']}: the answers differ with the cache on and off")
    if "shared" in scenarios and out["off"]["shared"]["answers"] != out["on"]["shared"]["answers"]:
        raise SystemExit("shared system prompt: the answers differ with the cache on and off")
    if a.json:
        print(json.dumps(out, indent=2))
        return
    if "chat" in scenarios:
        print("10-turn chat (answers identical with the cache on and off):")
        print("| turn | prompt tokens | cached (on) | TTFT off | TTFT on | on ÷ off |")
        print("|---:|---:|---:|---:|---:|---:|")
        for off, on in zip(out["off"]["chat"], out["on"]["chat"]):
            print(f"| {off['turn']} | {off['prompt']} | {on['cached']} | {off['ttft'] * 1000:.0f} ms | "
                  f"{on['ttft'] * 1000:.0f} ms | {on['ttft'] / off['ttft']:.2f} |")
        print()
    if "shared" in scenarios:
        sys_tokens = out["on"]["shared"]["prompt_tokens"] // len(QUESTIONS)
        print(f"shared system prompt ({sys_tokens} tokens per request), {len(QUESTIONS)} concurrent clients "
              "(answers identical):")
        print("| prefix cache | prompt tokens | computed | TTFT p50 | TTFT p99 | burst wall time |")
        print("|---|---:|---:|---:|---:|---:|")
        for mode in ("off", "on"):
            r = out[mode]["shared"]
            print(f"| {mode} | {r['prompt_tokens']} | {r['computed']} | {r['ttft_p50']:.2f} s | "
                  f"{r['ttft_p99']:.2f} s | {r['wall']:.1f} s |")
        print()
    if "rag" in scenarios:
        for workload, r in out["rag"]["workloads"].items():
            print(f"RAG, {workload}: {r['questions']} questions over {out['rag']['documents']} documents, top_k 3; "
                  f"{r['distinct_passage_sets']} distinct passage sets:")
            print("| run | prompt tokens | cached | hit rate | computed | TTFT p50 |")
            print("|---|---:|---:|---:|---:|---:|")
            for name, x in r["runs"].items():
                print(f"| {name} | {x['prompt_tokens']} | {x['cached']} | {x['hit_rate'] * 100:.1f}% | "
                      f"{x['prompt_tokens'] - x['cached']} | {x['ttft_p50'] * 1000:.0f} ms |")
            print()


if __name__ == "__main__":
    main()
