#!/usr/bin/env python3
"""BEIR SciFact through the real qrag-server's gRPC API, every search mode side by side in one run: the
5,183-document corpus ingested as title + " " + text (chunks of up to 254 WordPiece tokens, overlap 32), the
300 test queries retrieved with group_by_document (documents ranked by their best chunk), nDCG@10 and
recall@100 per mode (tests/integration/scifact_eval.py), ingest documents/s and retrieve latency.

usage: python3 bench/scifact_server.py --server-bin build/server/tools/qrag-server \
           --embedder ~/.cache/qrag/all-MiniLM-L6-v2 [--embedder-quant fp32|int8|...] [--scifact DIR] [--docs N]
           [--json]
qrag-server needs a generator; the script serves stories260K (../shared/models/stories260K, --model).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import qrag_stubs  # noqa: E402
import scifact_eval  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server-bin", required=True)
    p.add_argument("--model", default=os.path.join(HERE, "..", "..", "shared", "models", "stories260K",
                                                   "stories260K.bin"))
    p.add_argument("--embedder", required=True)
    p.add_argument("--scifact", default=os.path.join(HERE, "..", "..", "shared", "data", "scifact"))
    p.add_argument("--docs", type=int, default=0, help="only the first N documents (a quick look; not SciFact's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--embedder-quant", default="fp32", choices=["fp32", "bf16", "fp8", "int8"],
                   help="qrag-server --embedder-quant: the encoder's GEMMs")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    tmp, grpc, pb, pbg = qrag_stubs.generate()
    from qrag.v1 import retrieval_pb2 as rpb, retrieval_pb2_grpc as rgrpc
    corpus, queries, qrels = scifact_eval.load(a.scifact)
    if a.docs:
        corpus = dict(sorted(corpus.items())[:a.docs])
    data = tempfile.mkdtemp(prefix="qrag-scifact-")
    proc = subprocess.Popen([a.server_bin, "--model", a.model, "--embedder", a.embedder, "--data-dir", data,
                             "--embedder-quant", a.embedder_quant, "--threads", str(a.threads),
                            "--listen", "127.0.0.1:0", "--energy-meter", "none"],
                            stderr=subprocess.PIPE, text=True)
    try:
        addr = None
        for line in proc.stderr:
            if "listening on " in line:
                addr = line.split("listening on ", 1)[1].strip()
                break
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        stub = rgrpc.RetrievalStub(grpc.insecure_channel(addr))
        while True:
            try:
                stub.ListCollections(rpb.ListCollectionsRequest(), timeout=5)
                break
            except grpc.RpcError:
                time.sleep(0.5)
        docs, seconds, tokens = scifact_eval.ingest(rpb, stub, "scifact", corpus)
        # The encoder alone through the same server: Embed of the documents (truncated to 256 tokens).
        embed_tokens, embed_seconds = scifact_eval.embed_rate(rpb, stub, [corpus[k] for k in sorted(corpus)])
        chunks = [c.chunks for c in stub.ListCollections(rpb.ListCollectionsRequest(), timeout=60).collections
                  if c.name == "scifact"][0]
        out = {"embedder_quant": a.embedder_quant, "documents": docs, "chunks": chunks, "ingest_seconds": seconds, "ingest_docs_per_s": docs / seconds,
               "ingest_tokens_per_s": tokens / seconds, "embed_tokens_per_s": embed_tokens / embed_seconds,
               "ingest_vs_embed": (tokens / seconds) / (embed_tokens / embed_seconds),
               "queries": len(queries), "modes": {}}
        for name, mode in (("dense", rpb.SEARCH_MODE_DENSE), ("bm25", rpb.SEARCH_MODE_BM25),
                           ("hybrid", rpb.SEARCH_MODE_HYBRID)):
            runs, per_query = scifact_eval.retrieve_all(rpb, stub, "scifact", queries, mode)
            ndcg, recall = scifact_eval.score(runs, qrels)
            out["modes"][name] = {"ndcg_at_10": ndcg, "recall_at_100": recall, "seconds_per_query": per_query}
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        print(json.dumps(out, indent=2))
        return
    print(f"SciFact through qrag-server ({a.embedder_quant} encoder): {out['documents']} documents ({out['chunks']} chunks) ingested in "
          f"{out['ingest_seconds']:.0f} s ({out['ingest_docs_per_s']:.1f} docs/s, "
          f"{out['ingest_tokens_per_s']:.0f} tokens/s; the encoder alone through Embed: "
          f"{out['embed_tokens_per_s']:.0f} tokens/s, ingest ÷ embed {out['ingest_vs_embed']:.2f}); "
          f"{out['queries']} queries")
    print("| mode | nDCG@10 | recall@100 | ms per query |")
    print("|---|---:|---:|---:|")
    for name, m in out["modes"].items():
        print(f"| {name} | {m['ndcg_at_10']:.4f} | {m['recall_at_100']:.4f} | {m['seconds_per_query'] * 1000:.1f} |")


if __name__ == "__main__":
    main()
