#!/usr/bin/env python3
"""Soak: the real qrag-server (stories260K generator, real all-MiniLM-L6-v2 embedder, a RAG collection) under
mixed concurrent clients for a bounded time, loopback only. Issue "Reliability".

Clients, each in its own thread, until the time is up:
  unary Generate (valid, and invalid on purpose: bad sampling values, an unknown model, a prompt past the
  context), GenerateStream read to the end or cancelled after its first message, calls with deadlines of
  1-50 ms, Generate with the rag option, abrupt disconnects (a channel closed mid-stream), unparsable bytes,
  Retrieve, and Ingest streams (some cut off mid-stream).
A separate process probes health every 100 ms (its own interpreter, so the clients' GIL does not distort it).

Asserted at the end: the server never died; running and waiting return to 0 and every KV block is free;
resident memory grew by less than a bound after warm-up; every health probe was answered SERVING, p99 within
200 ms; qrag_requests_total by outcome equals what the clients saw, code for code; then, with ingests still
running, kill -9 and a restart on the same data directory: every acknowledged document is there.

usage: soak_test.py --server-bin PATH --run-bin PATH --make-model-bin PATH --cli-bin PATH --proto-dir DIR
                    --grpc-proto-dir DIR [--seconds N]   (default $QRAG_SOAK_SECONDS or 150)
Figures go to stdout (and $QRAG_SOAK_REPORT as JSON when set): requests per kind and outcome, health
latency percentiles, RSS, acknowledged documents. Requests per client are bounded by the time; every wait is
bounded.
"""
import collections
import json
import multiprocessing
import os
import random
import re
import signal
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serving_test as st  # noqa: E402
import rag_test as rt  # noqa: E402  (MiniLM location, rag_server, ingest helpers)

SECONDS = float(os.environ.get("QRAG_SOAK_SECONDS", "150"))
HEALTH_P99_SECONDS = 0.200
RSS_GROWTH_BYTES = 96 << 20  # after warm-up; the server keeps no per-request state past its end

# Greedy continuations of these run to the length limit (no end-of-text): a call cancelled or cut by a deadline
# after its first message is certainly still generating, so client and server agree on how it ended.
LONG_PROMPTS = ["Once upon a time", "Once upon a time, there was a little girl"]
PROMPTS = ["Once upon a time", "The little dog ran", "Lily and Ben went to the park", "One day, a cat",
           "The sun was shining and", "Tom had a big red ball"]


def outcome_name(code):
    return "ok" if code is None else code.name.lower()


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def setUpModule():
    rt.setUpModule()


def tearDownModule():
    rt.tearDownModule()


def health_prober(address, stop, out, proto_out_dir):
    """Runs in its own process: health every 100 ms with a 1 s deadline; (latency, status or error) each."""
    sys.path.insert(0, proto_out_dir)
    import grpc
    from qragtest import health_pb2, health_pb2_grpc
    channel = grpc.insecure_channel(address)
    stub = health_pb2_grpc.HealthStub(channel)
    samples = []
    while not stop.is_set():
        started = time.monotonic()
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0).status
            samples.append((time.monotonic() - started, "SERVING" if status == 1 else f"status {status}"))
        except grpc.RpcError as e:
            samples.append((time.monotonic() - started, f"error {e.code().name}"))
        time.sleep(0.1)
    out.put(samples)


class Soak(unittest.TestCase):
    def setUp(self):
        rt.require(self)

    def test_mixed_hostile_load(self):
        data = os.path.join(st.TMP, "soak-data")
        server = rt.rag_server(data, "--metrics-listen", "127.0.0.1:0", "--max-running", "8", "--max-waiting", "24",
                               "--kv-blocks", "96", "--drain-seconds", "1")
        grpc = st.grpc
        metrics_address = re.search(r"metrics on (\S+)", server.log_text()).group(1)
        r = server.retrieval
        r.CreateCollection(rt.rpb.CreateCollectionRequest(name="soak", chunk_tokens=64, chunk_overlap_tokens=8),
                           timeout=60)
        seed_docs = [rt.rpb.Document(id=f"seed-{i}", text=p) for i, p in enumerate(rt.paragraphs()[:40])]
        rt.ingest(r, "soak", seed_docs, batch=10)

        stop = threading.Event()
        lock = threading.Lock()
        seen = collections.Counter()       # generation calls: client-observed outcome -> count
        per_kind = collections.Counter()   # (kind, outcome) -> count, for the report
        acked_ids = set()
        errors = []

        def record(kind, code, counted=True):
            with lock:
                per_kind[(kind, outcome_name(code))] += 1
                if counted:
                    seen[outcome_name(code)] += 1

        def guarded(fn):
            def run(worker):
                rng = random.Random(worker * 7919 + 17)
                while not stop.is_set():
                    try:
                        fn(rng, worker)
                    except Exception as e:  # noqa: BLE001 - a client bug must fail the test, not hang it
                        errors.append(f"{fn.__name__}: {e!r}")
                        return
            return run

        def call(kind, fn, counted=True):
            try:
                fn()
                record(kind, None, counted)
            except grpc.RpcError as e:
                record(kind, e.code(), counted)

        def unary(rng, _):
            kind = rng.choice(["valid", "valid", "valid", "bad_top_p", "unknown_model", "too_long"])
            kw = dict(max_tokens=rng.randint(1, 40), temperature=rng.choice([0.0, 0.8, 1e-45]), seed=rng.randint(0, 99))
            if kind == "bad_top_p":
                kw["top_p"] = 1.5
            if kind == "unknown_model":
                kw["model"] = "x" * rng.randint(1, 9000)
            prompt = "la " * 900 if kind == "too_long" else rng.choice(PROMPTS)
            call(f"generate/{kind}", lambda: server.inference.Generate(st.request(prompt, **kw), timeout=120))

        def stream(rng, _):
            cancel = rng.random() < 0.5
            req = (st.request(rng.choice(LONG_PROMPTS), max_tokens=400, temperature=0) if cancel else
                   st.request(rng.choice(PROMPTS), max_tokens=rng.randint(1, 60), seed=rng.randint(0, 9)))
            it = server.inference.GenerateStream(req, timeout=120)
            try:
                for i, _msg in enumerate(it):
                    if cancel and i == 0:
                        it.cancel()  # mid-generation: 400 tokens are not done after the first message
                record("stream/" + ("cancel" if cancel else "full"), None)
            except grpc.RpcError as e:
                record("stream/" + ("cancel" if cancel else "full"), e.code())

        def deadline(rng, _):
            # 400 greedy tokens take far longer than 50 ms: the deadline, not the model, ends these.
            req = st.request(rng.choice(LONG_PROMPTS), max_tokens=400, temperature=0)
            call("generate/deadline", lambda: server.inference.Generate(req, timeout=rng.uniform(0.001, 0.05)))

        def rag_generate(rng, _):
            # Either no deadline to speak of, or one that 400 tokens after the retrieval cannot beat.
            short = rng.random() < 0.5
            req = st.request("Who was nominated to the Supreme Court?", temperature=0,
                             max_tokens=400 if short else rng.randint(1, 12))
            req.rag.collection = "soak"
            req.rag.top_k = rng.randint(1, 4)
            call("generate/rag" + ("_deadline" if short else ""),
                 lambda: server.inference.Generate(req, timeout=rng.uniform(0.005, 0.05) if short else 120))

        def disconnect(rng, _):
            channel = grpc.insecure_channel(server.address)
            stub = st.pb_grpc.InferenceStub(channel)
            it = stub.GenerateStream(st.request(rng.choice(LONG_PROMPTS), max_tokens=400, temperature=0), timeout=120)
            try:
                next(it)
                channel.close()  # abrupt: the server sees the connection go, mid-generation
                record("stream/disconnect", grpc.StatusCode.CANCELLED)
            except grpc.RpcError as e:
                record("stream/disconnect", e.code())
                channel.close()

        def garbage(rng, _):
            raw = server.channel.unary_unary("/qrag.v1.Inference/Generate")
            blob = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
            call("generate/garbage", lambda: raw(b"\x12\x03ab\xff" + blob, timeout=30))
            time.sleep(0.05)

        def retrieve(rng, _):
            q = rng.choice(["Supreme Court", "inflation", "Ukraine", "jobs", "cancer research"])
            call("retrieve", lambda: r.Retrieve(rt.rpb.RetrieveRequest(collection="soak", query=q, top_k=3),
                                                timeout=rng.choice([60, 0.02])), counted=False)

        ingest_serial = [0]

        def ingest(rng, worker):
            with lock:
                ingest_serial[0] += 1
                n = ingest_serial[0]
            docs = [rt.rpb.Document(id=f"w{worker}-{n}-{i}", text=f"Document {n}.{i}: " + rng.choice(PROMPTS) * 3)
                    for i in range(rng.randint(2, 9))]
            cut = rng.random() < 0.3
            batches = [docs[i:i + 3] for i in range(0, len(docs), 3)]
            acked = 0
            it = r.Ingest(iter(rt.rpb.IngestRequest(collection="soak" if i == 0 else "", documents=b)
                               for i, b in enumerate(batches)), timeout=120)
            try:
                for progress in it:
                    with lock:
                        for d in docs[acked:progress.documents]:
                            acked_ids.add(d.id)
                    acked = progress.documents
                    if cut:
                        it.cancel()
                record("ingest/" + ("cut" if cut else "full"), None, counted=False)
            except grpc.RpcError as e:
                record("ingest/" + ("cut" if cut else "full"), e.code(), counted=False)

        kinds = [unary, unary, stream, stream, deadline, rag_generate, disconnect, garbage, retrieve, ingest]
        threads = [threading.Thread(target=guarded(fn), args=(i,), daemon=True) for i, fn in enumerate(kinds)]
        ctx = multiprocessing.get_context("spawn")
        probe_stop, probe_out = ctx.Event(), ctx.Queue()
        prober = ctx.Process(target=health_prober,
                             args=(server.address, probe_stop, probe_out, os.path.join(st.TMP, "gen")))
        started = time.monotonic()
        prober.start()
        for t in threads:
            t.start()
        warm_rss = None
        while time.monotonic() - started < SECONDS:
            time.sleep(1)
            self.assertIsNone(server.proc.poll(), "qrag-server died under load:\n" + server.log_text()[-3000:])
            if warm_rss is None and time.monotonic() - started > min(20, SECONDS / 4):
                warm_rss = rss_bytes(server.proc.pid)
        stop.set()
        for t in threads[:-1]:  # every client but ingest stops; ingest goes on into the kill -9 below
            t.join(180)
        probe_stop.set()
        health = probe_out.get(timeout=60)
        prober.join(30)
        self.assertEqual(errors, [])

        # Nothing leaked: no request left, every KV block free.
        idle = server.wait_idle(60)
        self.assertEqual((idle.running, idle.waiting), (0, 0))
        self.assertEqual(idle.kv_blocks_free, idle.kv_blocks_total)
        end_rss = rss_bytes(server.proc.pid)

        # qrag_requests_total by outcome equals what the clients saw.
        with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        counted = collections.Counter()
        for outcome, value in re.findall(r'^qrag_requests_total\{[^}]*outcome="([a-z_]+)"[^}]*\} (\S+)$', text, re.M):
            counted[outcome] += int(float(value))
        counted = +counted  # drop zeros

        latencies = sorted(s[0] for s in health)
        p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("inf")
        bad_health = [s for s in health if s[1] != "SERVING"]
        report = {
            "seconds": SECONDS, "generation_calls": sum(seen.values()),
            "per_kind": {f"{k}:{o}": n for (k, o), n in sorted(per_kind.items())},
            "client_outcomes": dict(seen), "server_requests_total": dict(counted),
            "health_probes": len(latencies), "health_p50_ms": 1000 * latencies[len(latencies) // 2],
            "health_p99_ms": 1000 * p99, "health_max_ms": 1000 * latencies[-1], "health_not_serving": len(bad_health),
            "rss_warm_mb": (warm_rss or 0) / 2**20, "rss_end_mb": end_rss / 2**20,
            "kv_blocks_leaked": idle.kv_blocks_total - idle.kv_blocks_free,
        }

        # kill -9 while ingests are still running, restart on the same data: every acknowledged document is there.
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        threads[-1].join(180)
        with lock:
            acked = sorted(acked_ids)
        report["acknowledged_documents"] = len(acked)
        report["deadline_exceeded_never_reached_server"] = seen["deadline_exceeded"] - counted["deadline_exceeded"]
        print(json.dumps(report, indent=1))
        if os.environ.get("QRAG_SOAK_REPORT"):
            with open(os.environ["QRAG_SOAK_REPORT"], "w") as f:
                json.dump(report, f, indent=1)

        self.assertGreater(sum(seen.values()), 100, "too few calls to call this a soak")
        self.assertGreater(len(acked), 0)
        # Every outcome the clients saw is counted by the server, code for code. The one exception: a call whose
        # deadline (1-50 ms here) expires inside the client before it was sent never reaches the server, which
        # cannot count it; those few are DEADLINE_EXCEEDED on the client only.
        unseen = seen["deadline_exceeded"] - counted["deadline_exceeded"]
        report["deadline_exceeded_never_reached_server"] = unseen
        others = lambda c: {k: v for k, v in c.items() if k != "deadline_exceeded"}  # noqa: E731
        self.assertEqual(others(counted), others(seen), "qrag_requests_total disagrees with what clients saw")
        self.assertGreaterEqual(unseen, 0, "the server counted deadlines the clients did not see")
        deadline_calls = sum(n for (k, o), n in per_kind.items() if k in ("generate/deadline", "generate/rag_deadline"))
        self.assertLessEqual(unseen, max(5, deadline_calls // 50), report)
        self.assertEqual(bad_health, [])
        self.assertLessEqual(p99, HEALTH_P99_SECONDS, f"health p99 {p99 * 1000:.0f} ms under load")
        self.assertIsNotNone(warm_rss)
        self.assertLess(end_rss - warm_rss, RSS_GROWTH_BYTES, report)

        s2 = rt.rag_server(data)
        try:
            deleted = s2.retrieval.DeleteDocuments(rt.rpb.DeleteDocumentsRequest(collection="soak", ids=acked),
                                                   timeout=300).deleted
            self.assertEqual(deleted, len(acked), "acknowledged documents missing after kill -9 and restart")
        finally:
            s2.kill()


if __name__ == "__main__":
    args = [a for a in sys.argv]
    if "--seconds" in args:
        i = args.index("--seconds")
        SECONDS = float(args[i + 1])
        del sys.argv[i:i + 2]
    st.main()
