#!/usr/bin/env python3
"""Time to first token per turn of a 10-turn chat with SmolLM2-135M-Instruct (GGUF), qrag beside llama.cpp.

qrag: the real qrag-server (--quant fp32 on the GGUF's dequantized weights, --threads T), called with ChatStream;
TTFT is the server's own timings.time_to_first_token_seconds (arrival to first generated token) and the client's
(call start to first text). Each turn appends the model's greedy answer (max 64 tokens) to the history, so the
prompt grows with the conversation; qrag has no prefix cache yet (issue "Prefix caching"), so every turn prefills
the whole conversation again.

llama.cpp (optional, --llama-venv DIR with llama-cpp-python installed; not installed by CI): the same
conversations (qrag's answers as the assistant turns, so both see identical prompts), Llama(n_ctx=4096,
n_threads=T).create_chat_completion(stream=True), TTFT = call to first content chunk. llama-cpp-python keeps
the previous call's KV and reuses the longest common token prefix, i.e. it HAS prefix reuse: the comparison
shows what the prefix cache is worth.

usage: python3 bench/chat_ttft.py --server-bin build/server/tools/qrag-server --model SmolLM2.gguf
       [--threads 2] [--llama-venv /work/venv-gguf] [--proto-dir proto]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qrag_stubs  # noqa: E402

TURNS = [
    "Hi! I'm planning a trip to Italy. Can you help?",
    "Which three cities should I visit first?",
    "What is the best time of year to go?",
    "How do I travel between those cities?",
    "What food should I try in each one?",
    "Is it expensive? Give me a rough daily budget.",
    "Which museums are worth the queue?",
    "Any tips for avoiding crowds?",
    "What should I pack?",
    "Summarise the plan in three sentences.",
]

LLAMA = r'''
import json, sys, time
import llama_cpp
args = json.loads(sys.stdin.read())
llm = llama_cpp.Llama(model_path=args["model"], n_ctx=4096, n_threads=args["threads"], n_threads_batch=args["threads"],
                      verbose=False)
out = []
for messages in args["prompts"]:
    t0 = time.perf_counter()
    first = None
    n = 0
    for chunk in llm.create_chat_completion(messages=messages, temperature=0.0, max_tokens=args["max_tokens"],
                                            stream=True):
        delta = chunk["choices"][0]["delta"].get("content")
        if delta and first is None:
            first = time.perf_counter() - t0
        n += 1
    out.append({"ttft": first, "total": time.perf_counter() - t0})
print(json.dumps(out))
'''


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server-bin", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--llama-venv")
    p.add_argument("--proto-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "proto"))
    a = p.parse_args()

    tmp, grpc, pb, pbg = qrag_stubs.generate(a.proto_dir)

    server = subprocess.Popen([a.server_bin, "--model", a.model, "--threads", str(a.threads), "--listen",
                               "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    addr = None
    for line in server.stderr:
        if "listening on " in line:
            addr = line.split("listening on ", 1)[1].strip()
            break
    stub = pbg.InferenceStub(grpc.insecure_channel(addr))
    while True:
        try:
            stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
            break
        except grpc.RpcError:
            time.sleep(0.5)
    history, prompts, rows = [], [], []
    try:
        for turn, text in enumerate(TURNS, 1):
            history.append({"role": "user", "content": text})
            prompts.append(list(history))
            req = pb.ChatRequest(messages=[pb.ChatMessage(**m) for m in history], temperature=0,
                                 max_tokens=a.max_tokens)
            t0 = time.perf_counter()
            first, answer, last = None, "", None
            for m in stub.ChatStream(req, timeout=600):
                if m.text and first is None:
                    first = time.perf_counter() - t0
                answer += m.text
                last = m
            rows.append({"turn": turn, "prompt_tokens": last.usage.prompt_tokens,
                         "completion_tokens": last.usage.completion_tokens,
                         "server_ttft": last.timings.time_to_first_token_seconds, "client_ttft": first})
            history.append({"role": "assistant", "content": answer})
    finally:
        server.terminate()
        server.wait()

    llama = None
    if a.llama_venv:
        py = os.path.join(a.llama_venv, "bin", "python")
        r = subprocess.run([py, "-c", LLAMA], input=json.dumps({"model": a.model, "threads": a.threads,
                                                                "prompts": prompts, "max_tokens": a.max_tokens}),
                           capture_output=True, text=True, check=True)
        llama = json.loads(r.stdout.strip().splitlines()[-1])

    print(f"| turn | prompt tokens | qrag TTFT (server) | qrag TTFT (client) |"
          + (" llama.cpp TTFT | qrag ÷ llama.cpp TTFT |" if llama else ""))
    print("|---:|---:|---:|---:|" + ("---:|---:|" if llama else ""))
    for i, r in enumerate(rows):
        line = (f"| {r['turn']} | {r['prompt_tokens']} | {r['server_ttft'] * 1000:.0f} ms | "
                f"{r['client_ttft'] * 1000:.0f} ms |")
        if llama:
            lt = llama[i]["ttft"]
            line += f" {lt * 1000:.0f} ms | {r['client_ttft'] / lt:.2f} |"
        print(line)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
