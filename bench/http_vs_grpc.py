#!/usr/bin/env python3
"""What the OpenAI-compatible HTTP API costs beside gRPC: the same requests to one qrag-server, alternated
request by request between the front ends (so load, thermal state and caches are shared), side by side.

Model: the tiny stories260K (the protocol cost is then a visible share of each request) or any --model. Cases:
  - `models`:     GET /v1/models vs ListModels (no engine work: pure front-end cost);
  - `generate1`:  a 1-token generation, unary (POST /v1/completions vs Generate);
  - `stream64`:   a 64-token stream (POST /v1/completions stream=true, SSE vs GenerateStream), end to end and
                  per chunk.
Clients: Python on both sides — grpcio (Debian's python3-grpcio) with stubs generated at run time, and
http.client on one keep-alive connection (no SDK overhead; --sdk DIR adds the official `openai` package from
DIR, e.g. ~/.cache/qrag/pylib/openai-3.60.0 of tests/fetch_openai.sh). Client and server share the machine's
cores, as a sidecar client would.

usage: python3 bench/http_vs_grpc.py --server-bin build/server/tools/qrag-server --model M [--tokenizer T]
       [--requests 200] [--sdk DIR] [--json]
"""
import argparse
import http.client
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


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser()
    p.add_argument("--server-bin", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--tokenizer")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--sdk")
    p.add_argument("--json", action="store_true")
    p.add_argument("--proto-dir", default=os.path.join(here, "..", "proto"))
    a = p.parse_args()

    tmp, grpc, pb, pbg = qrag_stubs.generate(a.proto_dir)

    args = [a.server_bin, "--model", a.model, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
            "--threads", str(a.threads), "--energy-meter", "none"]
    if a.tokenizer:
        args += ["--tokenizer", a.tokenizer]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    addrs = {}
    ready = threading.Event()

    def read_log():
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            for key in ("listening on ", "http on "):
                if key in line:
                    addrs[key] = line.split(key, 1)[1].strip()
            if "serving '" in line:
                ready.set()
    threading.Thread(target=read_log, daemon=True).start()
    try:
        deadline = time.monotonic() + 600
        while not ready.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"qrag-server did not start (exit status {proc.poll()})")
        channel = grpc.insecure_channel(addrs["listening on "])
        stub = pbg.InferenceStub(channel)
        model = stub.ListModels(pb.ListModelsRequest(), timeout=30).models[0].name
        host, port = addrs["http on "].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=120)

        def http_call(method, path, body=None):
            conn.request(method, path, body=None if body is None else json.dumps(body),
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            assert r.status == 200, (r.status, data[:300])
            return data

        def http_stream(body):
            """(seconds to first chunk, chunks) of one SSE stream."""
            t0 = time.perf_counter()
            conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            assert r.status == 200, r.status
            first, chunks = None, 0
            while True:
                line = r.readline()
                if not line:
                    break
                if line.startswith(b"data: "):
                    if line.strip() == b"data: [DONE]":
                        break
                    chunks += 1
                    if first is None:
                        first = time.perf_counter() - t0
            r.read()
            return first, chunks

        def grpc_stream(req):
            t0 = time.perf_counter()
            first, chunks = None, 0
            for _ in stub.GenerateStream(req, timeout=120):
                chunks += 1
                if first is None:
                    first = time.perf_counter() - t0
            return first, chunks

        prompt = "Once upon a time"
        cases = {
            "models": (lambda: http_call("GET", "/v1/models"),
                       lambda: stub.ListModels(pb.ListModelsRequest(), timeout=30)),
            "generate1": (lambda: http_call("POST", "/v1/completions", {"model": model, "prompt": prompt,
                                                                         "max_tokens": 1, "temperature": 0}),
                          lambda: stub.Generate(pb.GenerateRequest(prompt=prompt, max_tokens=1, temperature=0),
                                                timeout=60)),
            "stream64": (lambda: http_stream({"model": model, "prompt": prompt, "max_tokens": 64,
                                              "temperature": 0, "stream": True}),
                         lambda: grpc_stream(pb.GenerateRequest(prompt=prompt, max_tokens=64, temperature=0))),
        }
        if a.sdk:
            sys.path.insert(0, a.sdk)
            import openai
            client = openai.OpenAI(base_url=f"http://{addrs['http on ']}/v1", api_key="x", max_retries=0)
            cases["generate1_sdk"] = (
                lambda: client.completions.create(model=model, prompt=prompt, max_tokens=1, temperature=0),
                cases["generate1"][1])
        results = {}
        for name, (h, g) in cases.items():
            for _ in range(5):  # warm both paths
                h()
                g()
            th, tg = [], []
            for _ in range(a.requests if name != "stream64" else max(20, a.requests // 10)):
                for fn, out in ((h, th), (g, tg)):
                    t0 = time.perf_counter()
                    fn()
                    out.append(time.perf_counter() - t0)
            results[name] = {
                "n": len(th),
                "http_ms_p50": 1e3 * statistics.median(th), "grpc_ms_p50": 1e3 * statistics.median(tg),
                "http_ms_p90": 1e3 * percentile(th, 0.9), "grpc_ms_p90": 1e3 * percentile(tg, 0.9),
                "http_over_grpc_p50": statistics.median(th) / statistics.median(tg),
            }
        if a.json:
            print(json.dumps(results, indent=2))
            return
        print(f"model {model}, {a.threads} server thread(s), client and server on this machine")
        print(f"{'case':<14} {'n':>5} {'HTTP p50 ms':>12} {'gRPC p50 ms':>12} {'HTTP p90':>9} {'gRPC p90':>9} "
              f"{'HTTP/gRPC':>10}")
        for name, r in results.items():
            print(f"{name:<14} {r['n']:>5} {r['http_ms_p50']:>12.3f} {r['grpc_ms_p50']:>12.3f} "
                  f"{r['http_ms_p90']:>9.3f} {r['grpc_ms_p90']:>9.3f} {r['http_over_grpc_p50']:>10.2f}")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
