#!/usr/bin/env python3
"""RAG through the real qrag-server (stories260K generator + the real all-MiniLM-L6-v2 embedder), called over
loopback by a Python grpcio client generated from the .proto files at test time (as serving_test.py) and by the
real `qrag` CLI: the Retrieval API and its failure cases, Generate with `rag` on the State of the Union, and a
crash test (kill -9 during a long ingest; every acknowledged document is there after the restart).

usage: rag_test.py --server-bin PATH --run-bin PATH --make-model-bin PATH --cli-bin PATH
                   --proto-dir DIR --grpc-proto-dir DIR [unittest args]

MiniLM weights: $QRAG_MINILM_DIR, else ${QRAG_CACHE_DIR:-~/.cache/qrag}/all-MiniLM-L6-v2 (tests/fetch_minilm.sh,
the ctest fixture `minilm`). Missing weights or shared data skip, or fail under QRAG_REQUIRE_SHARED=1.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serving_test as st  # noqa: E402  (stub generation, Server, shared-data checks)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import shared_data  # noqa: E402  (tests/shared_data.py)

SOTU = os.path.join(st.SHARED, "data", "rag", "state_of_the_union.txt")
rpb = None
rgrpc = None
MINILM = None
_skip = None


def minilm_dir():
    d = shared_data.cached_model("QRAG_MINILM_DIR", "all-MiniLM-L6-v2")
    return d if os.path.exists(os.path.join(d, "model.safetensors")) else None


def setUpModule():
    global rpb, rgrpc, MINILM, _skip
    st.setUpModule()
    from qrag.v1 import retrieval_pb2, retrieval_pb2_grpc
    rpb, rgrpc = retrieval_pb2, retrieval_pb2_grpc
    MINILM = minilm_dir()
    _skip = st._skip_reason
    if _skip is None and MINILM is None:
        _skip = "all-MiniLM-L6-v2 weights missing (run tests/fetch_minilm.sh or set QRAG_MINILM_DIR)"
    if _skip is None and not os.path.exists(SOTU):
        _skip = f"shared data missing: {SOTU}"
    st._skip_reason = _skip


def tearDownModule():
    st.tearDownModule()


def require(test):
    st.require_shared(test)  # skips with _skip's reason (or fails under QRAG_REQUIRE_SHARED=1)


def rag_server(data_dir, *extra):
    s = st.Server("--model", st.MODEL, "--embedder", MINILM, "--data-dir", data_dir, "--threads", "1", *extra)
    s.wait_serving(300)
    s.retrieval = rgrpc.RetrievalStub(s.channel)
    return s


def paragraphs():
    with open(SOTU, encoding="utf-8") as f:
        return [p.strip() for p in re.split(r"\n\s*\n", f.read()) if len(p.strip()) > 40]


def file_document_id(path, cwd=None):
    """The id `qrag ingest` gives a .txt/.md file: its canonical path, relative to the working directory when
    the file is below it, else absolute."""
    real = os.path.realpath(path)
    rel = os.path.relpath(real, os.path.realpath(cwd or os.getcwd()))
    return real if rel.startswith("..") else rel


def docs_batches(docs, size):
    for i in range(0, len(docs), size):
        yield docs[i:i + size]


def ingest_stream(stub, collection, docs, batch=8, timeout=600):
    """The progress messages of one Ingest call, as they arrive."""
    def requests():
        for i, b in enumerate(docs_batches(docs, batch)):
            yield rpb.IngestRequest(collection=collection if i == 0 else "", documents=b)
    return stub.Ingest(requests(), timeout=timeout)


def ingest(stub, collection, docs, batch=8, timeout=600):
    return list(ingest_stream(stub, collection, docs, batch, timeout))


class RetrievalApi(unittest.TestCase):
    """Collections, ingest, retrieve, embed and Generate-with-rag on one server, and every documented error."""

    server = None

    @classmethod
    def setUpClass(cls):
        if _skip is None:
            cls.data = os.path.join(st.TMP, "rag-api")
            cls.server = rag_server(cls.data, "--rag-max-document-bytes", "60000", "--metrics-listen", "127.0.0.1:0")
            # The State of the Union through the real CLI (files -> documents, progress bar, batches).
            cli = [st.ARGS.cli_bin]
            addr = ["--server", cls.server.address]
            subprocess.run(cli + ["collection", "create", "sotu", "--chunk-tokens", "64", "--chunk-overlap", "8"] + addr,
                           check=True, capture_output=True, timeout=60)
            cls.ingest_cli = subprocess.run(cli + ["ingest", SOTU, "--collection", "sotu"] + addr,
                                            capture_output=True, timeout=900)

    def setUp(self):
        require(self)
        self.r = self.server.retrieval

    def assert_code(self, fn, code, *fragments):
        with self.assertRaises(st.grpc.RpcError) as ctx:
            fn()
        self.assertEqual(ctx.exception.code(), code, ctx.exception.details())
        for f in fragments:
            self.assertIn(f, ctx.exception.details())

    def test_cli_ingest_and_list(self):
        self.assertEqual(self.ingest_cli.returncode, 0, self.ingest_cli.stderr)
        self.assertIn(b"ingested 1 documents", self.ingest_cli.stdout)
        self.assertIn(b"1/1 documents", self.ingest_cli.stderr)  # the progress bar
        listed = subprocess.run([st.ARGS.cli_bin, "collection", "list", "--server", self.server.address],
                                capture_output=True, timeout=60, check=True).stdout.decode()
        self.assertRegex(listed, r"sotu\tdocuments=1\tchunks=\d+")

    def test_cli_file_id_is_the_same_however_the_path_is_typed(self):
        """Issue "Reliability" item 8: one file ingested through three spellings of its path became three
        documents (the id was the path as typed)."""
        work = tempfile.mkdtemp(dir=st.TMP)
        os.makedirs(os.path.join(work, "d"))
        with open(os.path.join(work, "d", "a.txt"), "w") as f:
            f.write("A short note about qubits and error correction.")
        os.symlink(os.path.join(work, "d"), os.path.join(work, "link"))
        subprocess.run([st.ARGS.cli_bin, "collection", "create", "paths", "--server", self.server.address],
                       capture_output=True, timeout=60, check=True)
        for spelling in ("d/a.txt", "./d/a.txt", "d/../d/a.txt", "link/a.txt", os.path.join(work, "d", "a.txt")):
            p = subprocess.run([st.ARGS.cli_bin, "ingest", spelling, "--collection", "paths", "--server",
                                self.server.address], capture_output=True, timeout=120, cwd=work)
            self.assertEqual(p.returncode, 0, (spelling, p.stderr))
        info = [c for c in self.r.ListCollections(rpb.ListCollectionsRequest(), timeout=60).collections
                if c.name == "paths"]
        self.assertEqual(info[0].documents, 1)
        hits = self.r.Retrieve(rpb.RetrieveRequest(collection="paths", query="qubits", top_k=1), timeout=60)
        self.assertEqual(hits.passages[0].document_id, "d/a.txt")
        self.r.DropCollection(rpb.DropCollectionRequest(name="paths"), timeout=60)

    def test_generate_with_rag_returns_the_relevant_passages(self):
        cases = [
            ("Who did the president nominate to the Supreme Court?", "Ketanji Brown Jackson"),
            ("What is happening with Russia's invasion of Ukraine?", "Ukrain"),
            ("What is the plan to fight inflation and lower costs?", "inflation"),
        ]
        for question, expected in cases:
            with self.subTest(question=question):
                rag = st.pb.GenerateRequest(prompt=question, max_tokens=8, temperature=0)
                rag.rag.collection = "sotu"
                rag.rag.top_k = 2
                r = self.server.inference.Generate(rag, timeout=300)
                self.assertEqual(len(r.passages), 2)
                self.assertIn(expected, r.passages[0].text)
                # Best first by the default (hybrid) ranking: the fused score, not the cosine, orders them.
                self.assertGreaterEqual(r.passages[0].fused_score, r.passages[1].fused_score)
                self.assertEqual(r.passages[0].document_id, file_document_id(SOTU))
                self.assertEqual(r.passages[0].metadata["source"], file_document_id(SOTU))
                self.assertGreater(r.timings.embed_seconds, 0)
                self.assertGreater(r.timings.generate_seconds, 0)
                # The prompt the engine ran holds the passages: far more tokens than the question alone.
                self.assertGreater(r.usage.prompt_tokens, 100)
        # Streaming: the passages ride on the first message.
        req = st.pb.GenerateRequest(prompt=cases[0][0], max_tokens=4, temperature=0)
        req.rag.collection = "sotu"
        req.rag.top_k = 1  # stories260K's context is 512 tokens
        chunks = list(self.server.inference.GenerateStream(req, timeout=300))
        self.assertIn(cases[0][1], chunks[0].passages[0].text)
        self.assertGreater(chunks[-1].timings.search_seconds, 0)

    def test_generate_with_rag_fits_passages_to_the_context(self):
        question = "Who did the president nominate to the Supreme Court?"
        ctx = 512  # stories260K's context: ten SOTU passages are far more tokens than that

        def ask(top_k, max_tokens):
            req = st.pb.GenerateRequest(prompt=question, max_tokens=max_tokens, temperature=0)
            req.rag.collection = "sotu"
            req.rag.top_k = top_k
            return self.server.inference.Generate(req, timeout=300)

        best = ask(1, 8).passages[0]
        r = ask(10, 8)
        # The lowest-ranked passages were dropped: fewer than asked, best first, and the prompt fits.
        self.assertGreaterEqual(len(r.passages), 1)
        self.assertLess(len(r.passages), 10)
        self.assertEqual((r.passages[0].document_id, r.passages[0].chunk_index),
                         (best.document_id, best.chunk_index))
        self.assertLessEqual(r.usage.prompt_tokens + 8, ctx)
        self.assertEqual(r.usage.completion_tokens, 8)
        # Little room left: the best passage is cut to what fits (a prefix of it), flagged truncated.
        r = ask(3, 440)
        self.assertEqual(len(r.passages), 1)
        self.assertTrue(r.passages[0].truncated)
        self.assertTrue(best.text.startswith(r.passages[0].text))
        self.assertLess(len(r.passages[0].text), len(best.text))
        self.assertLessEqual(r.usage.prompt_tokens + 440, ctx)
        # No room for the question itself: OUT_OF_RANGE saying what to change; the server keeps serving.
        long_q = st.pb.GenerateRequest(prompt="why " * 200, max_tokens=300, temperature=0)
        long_q.rag.collection = "sotu"
        self.assert_code(lambda: self.server.inference.Generate(long_q, timeout=300), st.grpc.StatusCode.OUT_OF_RANGE,
                         "lower max_tokens")
        self.assertEqual(len(ask(1, 8).passages), 1)
        # max_tokens past the whole context: the limit named is the one the question alone allows (passages
        # are fitted to what max_tokens leaves), and it works as advertised. It used to name the limit for
        # the prompt with every passage (45), although far larger values work.
        with self.assertRaises(st.grpc.RpcError) as e:
            ask(3, 600)
        self.assertEqual(e.exception.code(), st.grpc.StatusCode.INVALID_ARGUMENT)
        m = re.search(r"use max_tokens <= (\d+)", e.exception.details())
        self.assertIsNotNone(m, e.exception.details())
        limit = int(m.group(1))
        self.assertGreater(limit, 400)
        r = ask(3, limit)
        self.assertEqual(r.usage.prompt_tokens + limit, ctx)

    def test_passage_order_canonical_by_default_shares_the_context_in_the_prefix_cache(self):
        # Three passages every question retrieves (min_score -1, top_k 3), ranked differently per question.
        self.r.CreateCollection(rpb.CreateCollectionRequest(name="order"), timeout=60)
        docs = {"a": "Alpine goats climb steep cliffs to lick salt from the bare rocks.",
                "b": "The night train to Vienna leaves the central station at ten o'clock.",
                "c": "Sourdough bread needs a starter of flour and water, fed every day."}
        ingest(self.r, "order", [rpb.Document(id=k, text=v) for k, v in docs.items()])
        questions = {"b": "When does the night train to Vienna leave the station?",
                     "c": "How do I keep a sourdough starter alive?"}

        def ask(best, order=None):
            req = st.pb.GenerateRequest(prompt=questions[best], max_tokens=2, temperature=0)
            req.rag.collection = "order"
            req.rag.top_k = 3
            req.rag.min_score = -1
            if order is not None:
                req.rag.passage_order = order
            r = self.server.inference.Generate(req, timeout=300)
            self.assertEqual([p.document_id for p in r.passages][0], best)  # best first, whatever the order
            self.assertEqual(len(r.passages), 3)
            return r

        # Default (canonical): the prompt holds a, b, c in that order, so [n] follows the document id.
        first = ask("b")
        self.assertEqual({p.document_id: p.citation for p in first.passages}, {"a": 1, "b": 2, "c": 3})
        scores = [p.fused_score for p in first.passages]  # best first (hybrid ranking) whatever the prompt order
        self.assertEqual(scores, sorted(scores, reverse=True))
        second = ask("c", rpb.PASSAGE_ORDER_CANONICAL)
        self.assertEqual({p.document_id: p.citation for p in second.passages}, {"a": 1, "b": 2, "c": 3})
        # A different question over the same passages: the whole context came from the prefix cache (all its
        # full blocks; only the question's differ).
        self.assertEqual(first.usage.cached_prompt_tokens, 0)
        self.assertGreater(second.usage.cached_prompt_tokens, 0)
        # What may differ: the question and its frame (at most a token per byte) and the block (16 positions)
        # the context ends in.
        uncached = len(f"\n\nQuestion: {questions['c']}\nAnswer:".encode()) + 16
        self.assertGreaterEqual(second.usage.cached_prompt_tokens, second.usage.prompt_tokens - uncached)
        # Rank order: [n] is the rank, and prompts led by b or c share nothing with the a-first ones above.
        rank_b = ask("b", rpb.PASSAGE_ORDER_RANK)
        self.assertEqual([p.citation for p in rank_b.passages], [1, 2, 3])
        self.assertEqual(rank_b.usage.cached_prompt_tokens, 0)
        rank_c = ask("c", rpb.PASSAGE_ORDER_RANK)
        self.assertEqual(rank_c.usage.cached_prompt_tokens, 0)
        # A value outside the enum: INVALID_ARGUMENT naming the field.
        bad = st.pb.GenerateRequest(prompt="x", max_tokens=1)
        bad.rag.collection = "order"
        bad.rag.passage_order = 7
        self.assert_code(lambda: self.server.inference.Generate(bad, timeout=60),
                         st.grpc.StatusCode.INVALID_ARGUMENT, "rag.passage_order 7")

    def test_search_modes_through_grpc_and_the_cli(self):
        q = "Ketanji Brown Jackson"

        def retrieve(**kw):
            return self.r.Retrieve(rpb.RetrieveRequest(collection="sotu", query=q, top_k=5, min_score=-1, **kw),
                                   timeout=300).passages

        bm25 = retrieve(mode=rpb.SEARCH_MODE_BM25)
        self.assertIn("Ketanji", bm25[0].text)
        self.assertTrue(all(p.bm25_score > 0 and p.fused_score == 0 for p in bm25))
        self.assertEqual([p.bm25_score for p in bm25], sorted((p.bm25_score for p in bm25), reverse=True))
        dense = retrieve(mode=rpb.SEARCH_MODE_DENSE)
        self.assertTrue(all(p.bm25_score == 0 and p.fused_score == 0 for p in dense))
        self.assertEqual([p.score for p in dense], sorted((p.score for p in dense), reverse=True))
        hybrid = retrieve(mode=rpb.SEARCH_MODE_HYBRID)
        self.assertIn("Ketanji", hybrid[0].text)
        self.assertTrue(all(p.fused_score > 0 for p in hybrid))
        # Unset is hybrid.
        default = retrieve()
        self.assertEqual([(p.chunk_index, p.fused_score) for p in default],
                         [(p.chunk_index, p.fused_score) for p in hybrid])
        # One document (the speech): grouped, one passage whatever top_k.
        self.assertEqual(len(retrieve(group_by_document=True)), 1)
        self.assert_code(lambda: retrieve(mode=9), st.grpc.StatusCode.INVALID_ARGUMENT, "mode 9 is not a SearchMode")
        # Generate's rag option takes the mode too; a bad one is refused before any retrieval.
        req = st.pb.GenerateRequest(prompt="Who was nominated to the Supreme Court?", max_tokens=2, temperature=0)
        req.rag.collection = "sotu"
        req.rag.top_k = 1
        req.rag.mode = rpb.SEARCH_MODE_BM25
        r = self.server.inference.Generate(req, timeout=300)
        self.assertGreater(r.passages[0].bm25_score, 0)
        req.rag.mode = 9
        self.assert_code(lambda: self.server.inference.Generate(req, timeout=60),
                         st.grpc.StatusCode.INVALID_ARGUMENT, "rag.mode 9")
        # The CLI: --mode and --group-by-document; the JSON carries the BM25 and fused scores.
        cli = [st.ARGS.cli_bin, "retrieve", "--collection", "sotu", "--query", q, "--top-k", "3", "--json",
               "--server", self.server.address]
        out = subprocess.run(cli + ["--mode", "bm25"], capture_output=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        rows = json.loads(out.stdout)
        self.assertGreater(rows[0]["bm25_score"], 0)
        self.assertIn("Ketanji", rows[0]["text"])
        out = subprocess.run(cli + ["--group-by-document"], capture_output=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(len(json.loads(out.stdout)), 1)
        out = subprocess.run(cli + ["--mode", "sparse"], capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn(b"--mode", out.stderr)

    def test_retrieve_feeds_the_rag_metrics(self):
        def counts():
            m = re.search(r"metrics on (\S+)", self.server.log_text())
            self.assertIsNotNone(m, "the server did not print its metrics address")
            with urllib.request.urlopen(f"http://{m.group(1)}/metrics", timeout=10) as r:
                text = r.read().decode()
            found = {}
            for name in ("qrag_rag_embed_seconds_count", "qrag_rag_search_seconds_count"):
                values = re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
                found[name] = sum(float(v) for v in values)
            return found
        before = counts()
        for _ in range(3):
            self.r.Retrieve(rpb.RetrieveRequest(collection="sotu", query="Supreme Court", top_k=2), timeout=300)
        after = counts()
        for name in before:
            self.assertEqual(after[name] - before[name], 3, name)

    def test_cli_retrieve_and_generate_rag(self):
        out = subprocess.run([st.ARGS.cli_bin, "retrieve", "--collection", "sotu", "--query",
                              "Who was nominated to the Supreme Court?", "--top-k", "1", "--json",
                              "--server", self.server.address], capture_output=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("Ketanji", out.stdout.decode())
        out = subprocess.run([st.ARGS.cli_bin, "generate", "--prompt", "Who was nominated to the Supreme Court?",
                              "--rag", "sotu", "--rag-top-k", "1", "--max-tokens", "4", "--server",
                              self.server.address], capture_output=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(b"passage [1]", out.stderr)
        out = subprocess.run([st.ARGS.cli_bin, "retrieve", "--collection", "missing", "--query", "x",
                              "--server", self.server.address], capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 1)
        self.assertIn(b"NOT_FOUND", out.stderr)
        out = subprocess.run([st.ARGS.cli_bin, "ingest", "--collection", "sotu", "--server", self.server.address],
                             capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 2)  # usage: no PATH

    def test_upsert_delete_filter_embed(self):
        self.r.CreateCollection(rpb.CreateCollectionRequest(name="kb"), timeout=60)
        docs = [rpb.Document(id="a", text="The cat sat on the warm windowsill and purred.", metadata={"lang": "en"}),
                rpb.Document(id="b", text="Le chat dort sur le canapé.", metadata={"lang": "fr"})]
        progress = ingest(self.r, "kb", docs, batch=1)
        self.assertEqual([p.documents for p in progress], [1, 2])
        # Upsert "a" with new text: replaced, not duplicated.
        progress = ingest(self.r, "kb", [rpb.Document(id="a", text="Quantum computers use qubits.")])
        self.assertEqual(progress[-1].replaced, 1)
        info = [c for c in self.r.ListCollections(rpb.ListCollectionsRequest(), timeout=60).collections
                if c.name == "kb"][0]
        self.assertEqual(info.documents, 2)
        hits = self.r.Retrieve(rpb.RetrieveRequest(collection="kb", query="qubits", top_k=5, min_score=-1), timeout=60)
        self.assertEqual(hits.passages[0].document_id, "a")
        self.assertNotIn("cat", " ".join(p.text for p in hits.passages))
        hits = self.r.Retrieve(rpb.RetrieveRequest(collection="kb", query="qubits", top_k=5, min_score=-1,
                                                   filter={"lang": "fr"}), timeout=60)
        self.assertEqual([p.document_id for p in hits.passages], ["b"])
        self.assertEqual(self.r.DeleteDocuments(rpb.DeleteDocumentsRequest(collection="kb", ids=["b", "zz"]),
                                                timeout=60).deleted, 1)
        e = self.r.Embed(rpb.EmbedRequest(texts=["a small cat", "a little kitten", "tax policy"]), timeout=60)
        self.assertEqual(e.dim, 384)
        v = [list(x.values) for x in e.embeddings]
        dot = lambda x, y: sum(p * q for p, q in zip(x, y))  # noqa: E731
        self.assertAlmostEqual(dot(v[0], v[0]), 1.0, places=4)
        self.assertGreater(dot(v[0], v[1]), dot(v[0], v[2]))
        self.r.DropCollection(rpb.DropCollectionRequest(name="kb"), timeout=60)

    def test_ingest_stream_with_a_bad_message_ends_with_its_error(self):
        """Issue "Reliability" item 1: a message that does not parse (garbage bytes, or a document whose text is
        not UTF-8) in the middle of an Ingest stream used to read as the end of the stream: status OK, and the
        documents after it silently dropped. It must end the stream with INVALID_ARGUMENT naming the message."""
        r = self.r
        C = st.grpc.StatusCode
        r.CreateCollection(rpb.CreateCollectionRequest(name="badmsg"), timeout=60)
        raw = self.server.channel.stream_stream("/qrag.v1.Retrieval/Ingest")
        first = rpb.IngestRequest(collection="badmsg", documents=[rpb.Document(id="a", text="alpha")]).SerializeToString()
        last = rpb.IngestRequest(documents=[rpb.Document(id="c", text="gamma")]).SerializeToString()
        not_utf8 = b"\x12\x08\x0a\x01u\x12\x03x\xffy"  # documents[0] = {id: "u", text: "x\xffy"}
        for bad, fragment in ((b"\xff\xff\xff\xff", "not a valid serialized qrag.v1.IngestRequest"),
                              (not_utf8, "documents[0].text: invalid UTF-8")):
            with self.subTest(fragment=fragment):
                acks = []
                with self.assertRaises(st.grpc.RpcError) as ctx:
                    for progress in raw(iter([first, bad, last]), timeout=120):
                        acks.append(rpb.IngestProgress.FromString(progress).documents)
                self.assertEqual(ctx.exception.code(), C.INVALID_ARGUMENT, ctx.exception.details())
                self.assertIn("IngestRequest 2 of this call", ctx.exception.details())
                self.assertIn(fragment, ctx.exception.details())
                self.assertIn("1 documents of earlier messages of this call are stored", ctx.exception.details())
                self.assertEqual(acks, [1])
        # "a" is stored (acknowledged); "c", after the bad message, is not.
        deleted = r.DeleteDocuments(rpb.DeleteDocumentsRequest(collection="badmsg", ids=["a", "c", "u"]), timeout=60)
        self.assertEqual(deleted.deleted, 1)
        r.DropCollection(rpb.DropCollectionRequest(name="badmsg"), timeout=60)

    def test_rag_load_does_not_stall_health_or_plain_generate(self):
        """Issue "Reliability" item 2: Generate with rag embedded and searched on the gRPC thread that started it:
        40 concurrent RAG Generates (top_k 20) pushed health checks to 2.4-6.3 s and a 4-token plain Generate
        to 14 s. Retrieval now runs on the work queue; gRPC's threads stay free."""
        stop = threading.Event()
        errors = []

        def rag_load():
            req = st.pb.GenerateRequest(prompt="Who was nominated to the Supreme Court?", max_tokens=4, temperature=0)
            req.rag.collection = "sotu"
            req.rag.top_k = 20
            while not stop.is_set():
                try:
                    self.server.inference.Generate(req, timeout=300)
                except st.grpc.RpcError as e:
                    if e.code() != st.grpc.StatusCode.RESOURCE_EXHAUSTED:  # a full work queue is a fair answer
                        errors.append(e)

        threads = [threading.Thread(target=rag_load, daemon=True) for _ in range(40)]
        for t in threads:
            t.start()
        try:
            time.sleep(2)  # the work queue is full of embeddings and searches
            worst_health = worst_generate = 0.0  # seconds
            for _ in range(10):
                started = time.monotonic()
                self.assertEqual(self.server.health_status(), st.health_pb.HealthCheckResponse.SERVING)
                worst_health = max(worst_health, time.monotonic() - started)
                started = time.monotonic()
                r = self.server.inference.Generate(st.pb.GenerateRequest(prompt="Once", max_tokens=4), timeout=120)
                # Time outside the engine (gRPC, admission): what the bug inflated. Time inside it is the
                # engine's FIFO queue behind the RAG requests' long prompts, which is fair under overload.
                worst_generate = max(worst_generate, time.monotonic() - started - r.timings.total_seconds)
                self.assertEqual(r.usage.completion_tokens, 4)
                time.sleep(0.2)
        finally:
            stop.set()
            for t in threads:
                t.join(300)
        self.assertEqual(errors, [])
        # Bounds far below what the bug produced (seconds), far above what a free gRPC thread needs.
        self.assertLess(worst_health, 1.0)
        self.assertLess(worst_generate, 1.0)

    def test_unparsable_requests_are_invalid_argument_on_every_method(self):
        """Issue "Reliability" item 5: bytes that are not the request got UNIMPLEMENTED (ListModels,
        GetModelInfo, GetServerStats) or INTERNAL (the unary Retrieval methods)."""
        garbage = b"\x0a\xff\xff\xff\x7f"  # field 1, length-delimited, a length past the end
        for method in ("/qrag.v1.Inference/ListModels", "/qrag.v1.Inference/GetModelInfo",
                       "/qrag.v1.Admin/GetServerStats", "/qrag.v1.Inference/Generate",
                       "/qrag.v1.Retrieval/Embed", "/qrag.v1.Retrieval/CreateCollection",
                       "/qrag.v1.Retrieval/ListCollections", "/qrag.v1.Retrieval/DropCollection",
                       "/qrag.v1.Retrieval/DeleteDocuments", "/qrag.v1.Retrieval/Retrieve",
                       "/qrag.v1.Inference/Chat", "/qrag.v1.Inference/ApplyChatTemplate"):
            with self.subTest(method=method):
                call = self.server.channel.unary_unary(method)
                self.assert_code(lambda: call(garbage, timeout=60), st.grpc.StatusCode.INVALID_ARGUMENT)
        for method in ("/qrag.v1.Inference/GenerateStream", "/qrag.v1.Inference/ChatStream"):
            stream = self.server.channel.unary_stream(method)
            self.assert_code(lambda: list(stream(garbage, timeout=60)), st.grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(self.server.health_status(), st.health_pb.HealthCheckResponse.SERVING)

    def test_failure_cases_clear_errors_and_server_keeps_serving(self):
        C = st.grpc.StatusCode
        r = self.r
        self.assert_code(lambda: r.Retrieve(rpb.RetrieveRequest(collection="nope", query="q"), timeout=60),
                         C.NOT_FOUND, "nope")
        self.assert_code(lambda: ingest(r, "nope", [rpb.Document(id="x", text="y")]), C.NOT_FOUND)
        self.assert_code(lambda: r.DropCollection(rpb.DropCollectionRequest(name="nope"), timeout=60), C.NOT_FOUND)
        self.assert_code(lambda: r.DeleteDocuments(rpb.DeleteDocumentsRequest(collection="nope", ids=["a"]),
                                                   timeout=60), C.NOT_FOUND)
        gen = st.pb.GenerateRequest(prompt="q", max_tokens=2)
        gen.rag.collection = "nope"
        self.assert_code(lambda: self.server.inference.Generate(gen, timeout=60), C.NOT_FOUND)
        gen.rag.collection = "sotu"
        gen.rag.top_k = 1001  # one rule for Generate's rag and Retrieve: 0 -> 5, at most 1000
        self.assert_code(lambda: self.server.inference.Generate(gen, timeout=60), C.INVALID_ARGUMENT,
                         "rag.top_k must be in [0, 1000] (0: 5)")
        gen.rag.top_k = 1
        for bad in (float("nan"), float("-inf"), 2.0, -1.5):  # min_score is a cosine: [-1, 1]
            gen.rag.min_score = bad
            self.assert_code(lambda: self.server.inference.Generate(gen, timeout=60), C.INVALID_ARGUMENT,
                             "rag.min_score is a cosine similarity")
            self.assert_code(lambda: r.Retrieve(rpb.RetrieveRequest(collection="sotu", query="q", min_score=bad),
                                                timeout=60), C.INVALID_ARGUMENT, "min_score")
        gen.rag.min_score = 0
        gen.rag.prompt_template = "no placeholder"
        self.assert_code(lambda: self.server.inference.Generate(gen, timeout=60), C.INVALID_ARGUMENT, "{question}")
        self.assert_code(lambda: r.CreateCollection(rpb.CreateCollectionRequest(name="bad/name"), timeout=60),
                         C.INVALID_ARGUMENT, "name")
        self.assert_code(lambda: r.CreateCollection(rpb.CreateCollectionRequest(name="sotu"), timeout=60),
                         C.ALREADY_EXISTS)
        self.assert_code(lambda: r.CreateCollection(rpb.CreateCollectionRequest(name="c2", chunk_tokens=4096),
                                                    timeout=60), C.INVALID_ARGUMENT, "chunk_tokens")
        self.assert_code(lambda: r.CreateCollection(rpb.CreateCollectionRequest(name="c2", embedder="bge-large"),
                                                    timeout=60), C.FAILED_PRECONDITION, "bge-large")
        r.CreateCollection(rpb.CreateCollectionRequest(name="errs"), timeout=60)
        self.assert_code(lambda: ingest(r, "errs", [rpb.Document(id="e", text="")]), C.INVALID_ARGUMENT, "empty")
        self.assert_code(lambda: ingest(r, "errs", [rpb.Document(id="", text="t")]), C.INVALID_ARGUMENT, "id")
        self.assert_code(lambda: ingest(r, "errs", [rpb.Document(id="big", text="word " * 14000)]),
                         C.INVALID_ARGUMENT, "limit")
        self.assert_code(lambda: ingest(r, "errs", [rpb.Document(id="d", text="x"), rpb.Document(id="d", text="y")]),
                         C.INVALID_ARGUMENT, "twice")
        self.assert_code(lambda: ingest(r, "", [rpb.Document(id="d", text="x")]), C.INVALID_ARGUMENT, "collection")
        self.assert_code(lambda: r.Retrieve(rpb.RetrieveRequest(collection="errs", query=""), timeout=60),
                         C.INVALID_ARGUMENT, "query")
        self.assert_code(lambda: r.Retrieve(rpb.RetrieveRequest(collection="errs", query="q", top_k=-3), timeout=60),
                         C.INVALID_ARGUMENT, "top_k must be in [0, 1000] (0: 5)")
        self.assert_code(lambda: r.Retrieve(rpb.RetrieveRequest(collection="errs", query="q", top_k=1001),
                                            timeout=60), C.INVALID_ARGUMENT, "top_k must be in [0, 1000] (0: 5)")
        self.assert_code(lambda: r.Embed(rpb.EmbedRequest(), timeout=60), C.INVALID_ARGUMENT)
        # A failed batch stored nothing; the collection is usable and the server still answers.
        info = [c for c in r.ListCollections(rpb.ListCollectionsRequest(), timeout=60).collections if c.name == "errs"]
        self.assertEqual(info[0].documents, 0)
        self.assertEqual(ingest(r, "errs", [rpb.Document(id="ok", text="fine text")])[-1].documents, 1)
        self.assertEqual(self.server.health_status(), st.health_pb.HealthCheckResponse.SERVING)


class FaissIndexes(unittest.TestCase):
    """Collections on FAISS HNSW and IVF beside an exact one on the real server: created through gRPC and the
    CLI with parameters, the same passages as exact search, filters, upsert/delete, ListCollections showing
    the kind and what serves searches, every bad parameter INVALID_ARGUMENT, and the kind and results kept
    across a restart."""

    QUESTIONS = ["Who did the president nominate to the Supreme Court?",
                 "What is happening with Russia's invasion of Ukraine?",
                 "What is the plan to fight inflation and lower costs?"]

    def setUp(self):
        require(self)

    def top(self, stub, collection, query, k=5, **kw):
        # Dense: this class tests the vector indexes (hybrid would mix in the keyword ranking).
        r = stub.Retrieve(rpb.RetrieveRequest(collection=collection, query=query, top_k=k, min_score=-1,
                                              mode=rpb.SEARCH_MODE_DENSE, **kw), timeout=300)
        return [(p.document_id, p.chunk_index) for p in r.passages], r.passages

    def test_hnsw_ivf_match_exact_filters_deletes_errors_restart(self):
        C = st.grpc.StatusCode
        data = os.path.join(st.TMP, "rag-faiss")
        s = rag_server(data)
        try:
            cli = [st.ARGS.cli_bin]
            addr = ["--server", s.address]
            out = subprocess.run(cli + ["collection", "create", "hn", "--index", "hnsw", "--hnsw-ef-search", "64",
                                        "--chunk-tokens", "64", "--chunk-overlap", "8"] + addr,
                                 capture_output=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn(b"index=hnsw m=32 ef_construction=128 ef_search=64", out.stdout)
            s.retrieval.CreateCollection(rpb.CreateCollectionRequest(
                name="iv", chunk_tokens=64, chunk_overlap_tokens=8,
                index=rpb.IndexSpec(kind=rpb.INDEX_KIND_IVF, ivf_nlist=4, ivf_nprobe=4)), timeout=60)
            s.retrieval.CreateCollection(rpb.CreateCollectionRequest(name="ex", chunk_tokens=64,
                                                                     chunk_overlap_tokens=8), timeout=60)
            paras = paragraphs()[:40]
            docs = [rpb.Document(id=f"p{i}", text=t, metadata={"half": "even" if i % 2 == 0 else "odd"})
                    for i, t in enumerate(paras)]
            for name in ("hn", "iv", "ex"):
                self.assertEqual(ingest(s.retrieval, name, docs, batch=10)[-1].documents, len(docs))
            info = {c.name: c for c in s.retrieval.ListCollections(rpb.ListCollectionsRequest(), timeout=60).collections}
            self.assertEqual(info["hn"].index.kind, rpb.INDEX_KIND_HNSW)
            self.assertEqual((info["hn"].index.hnsw_m, info["hn"].index.hnsw_ef_search), (32, 64))
            self.assertIn("hnsw: graph of", info["hn"].index_status)
            self.assertEqual((info["iv"].index.ivf_nlist, info["iv"].index.ivf_nprobe), (4, 4))
            self.assertIn("in 4 lists trained on", info["iv"].index_status)
            self.assertEqual(info["ex"].index.kind, rpb.INDEX_KIND_EXACT)
            self.assertIn("exact", info["ex"].index_status)
            # On this small corpus (and IVF probing all its lists) the FAISS indexes find the exact top-5.
            before = {}
            for q in self.QUESTIONS:
                exact, _ = self.top(s.retrieval, "ex", q)
                for name in ("hn", "iv"):
                    got, passages = self.top(s.retrieval, name, q)
                    self.assertEqual(got, exact, f"{name}: {q}")
                    self.assertGreaterEqual(passages[0].score, passages[-1].score)
                    before[(name, q)] = got
                # A filter keeps top_k passages, all matching.
                for name in ("hn", "iv"):
                    _, passages = self.top(s.retrieval, name, q, k=5, filter={"half": "odd"})
                    self.assertEqual(len(passages), 5)
                    self.assertEqual({p.metadata["half"] for p in passages}, {"odd"})
            # Delete the best passage's document and upsert another: the deleted and replaced text are gone.
            best = before[("hn", self.QUESTIONS[0])][0][0]
            up = 1 if best != "p1" else 3  # the document to upsert: another one
            for name in ("hn", "iv"):
                self.assertEqual(s.retrieval.DeleteDocuments(rpb.DeleteDocumentsRequest(collection=name, ids=[best]),
                                                             timeout=60).deleted, 1)
                ingest(s.retrieval, name, [rpb.Document(id=f"p{up}", text="Penguins huddle together on the ice.",
                                                        metadata={"half": "odd"})])
                got, passages = self.top(s.retrieval, name, self.QUESTIONS[0], k=len(docs))
                self.assertNotIn(best, [d for d, _ in got], name)
                self.assertNotIn(paras[up][:60], " ".join(p.text for p in passages), name)
                got, _ = self.top(s.retrieval, name, "penguins on the ice", k=1)
                self.assertEqual(got[0][0], f"p{up}", name)
            after_delete = {n: self.top(s.retrieval, n, self.QUESTIONS[1])[0] for n in ("hn", "iv")}
            # Bad parameters: INVALID_ARGUMENT naming the field; nothing created.
            bad = [
                (rpb.IndexSpec(kind=rpb.INDEX_KIND_HNSW, hnsw_m=1000), "index.hnsw_m must be in [4, 128]"),
                (rpb.IndexSpec(kind=rpb.INDEX_KIND_HNSW, hnsw_ef_search=-1), "index.hnsw_ef_search"),
                (rpb.IndexSpec(kind=rpb.INDEX_KIND_IVF, ivf_nlist=8, ivf_nprobe=9), "index.ivf_nprobe must be in [1, 8]"),
                (rpb.IndexSpec(kind=rpb.INDEX_KIND_HNSW, ivf_nlist=8), "index.ivf_nlist applies to ivf indexes"),
                (rpb.IndexSpec(kind=rpb.INDEX_KIND_AUTO, auto_threshold=-2), "index.auto_threshold"),
                (rpb.IndexSpec(hnsw_m=16), "not exact"),
                (rpb.IndexSpec(kind=9), "index.kind 9"),
            ]
            for spec, fragment in bad:
                with self.subTest(fragment=fragment):
                    with self.assertRaises(st.grpc.RpcError) as ctx:
                        s.retrieval.CreateCollection(rpb.CreateCollectionRequest(name="bad", index=spec), timeout=60)
                    self.assertEqual(ctx.exception.code(), C.INVALID_ARGUMENT, ctx.exception.details())
                    self.assertIn(fragment, ctx.exception.details())
            out = subprocess.run(cli + ["collection", "create", "bad", "--index", "lsh"] + addr, capture_output=True,
                                 timeout=60)
            self.assertEqual(out.returncode, 2)
            self.assertIn(b"exact, hnsw, ivf, auto", out.stderr)
            out = subprocess.run(cli + ["collection", "create", "bad", "--index", "ivf", "--hnsw-m", "8"] + addr,
                                 capture_output=True, timeout=60)
            self.assertEqual(out.returncode, 1)
            self.assertIn(b"INVALID_ARGUMENT", out.stderr)
            self.assertIn(b"hnsw_m applies to hnsw and auto", out.stderr)
            names = [c.name for c in s.retrieval.ListCollections(rpb.ListCollectionsRequest(), timeout=60).collections]
            self.assertNotIn("bad", names)
            self.assertEqual(s.health_status(), st.health_pb.HealthCheckResponse.SERVING)
        finally:
            s.kill()
        # Restart: the kinds and parameters come back and the rebuilt indexes answer as before.
        s = rag_server(data)
        try:
            info = {c.name: c for c in s.retrieval.ListCollections(rpb.ListCollectionsRequest(), timeout=60).collections}
            self.assertEqual(info["hn"].index.kind, rpb.INDEX_KIND_HNSW)
            self.assertEqual(info["hn"].index.hnsw_ef_search, 64)
            self.assertEqual(info["iv"].index.kind, rpb.INDEX_KIND_IVF)
            self.assertIn("hnsw: graph of", info["hn"].index_status)
            # The start log names each collection's index and what serves it (built before SERVING).
            self.assertIn("RAG: collection 'hn': hnsw m=32 ef_construction=128 ef_search=64 [hnsw: graph of",
                          s.log_text())
            listed = subprocess.run([st.ARGS.cli_bin, "collection", "list", "--server", s.address],
                                    capture_output=True, timeout=60, check=True).stdout.decode()
            self.assertRegex(listed, r"iv\t.*index=ivf nlist=4 nprobe=4\t\[ivf: ")
            for name in ("hn", "iv"):
                self.assertEqual(self.top(s.retrieval, name, self.QUESTIONS[1])[0], after_delete[name], name)
        finally:
            s.kill()


class NoEmbedder(unittest.TestCase):
    def setUp(self):
        require(self)

    def test_retrieval_off_failed_precondition(self):
        s = st.Server("--model", st.MODEL)
        s.wait_serving()
        try:
            stub = rgrpc.RetrievalStub(s.channel)
            with self.assertRaises(st.grpc.RpcError) as ctx:
                stub.ListCollections(rpb.ListCollectionsRequest(), timeout=30)
            self.assertEqual(ctx.exception.code(), st.grpc.StatusCode.FAILED_PRECONDITION)
            self.assertIn("--embedder", ctx.exception.details())
            gen = st.pb.GenerateRequest(prompt="q", max_tokens=2)
            gen.rag.collection = "any"
            with self.assertRaises(st.grpc.RpcError) as ctx:
                s.inference.Generate(gen, timeout=30)
            self.assertEqual(ctx.exception.code(), st.grpc.StatusCode.FAILED_PRECONDITION)
        finally:
            s.kill()

    def test_embedder_without_data_dir_is_a_usage_error(self):
        p = subprocess.run([st.ARGS.server_bin, "--model", st.MODEL, "--embedder", "/x"], capture_output=True,
                           timeout=60)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"--data-dir", p.stderr)

    def test_embedder_device_flag(self):
        base = [st.ARGS.server_bin, "--model", st.MODEL, "--embedder", MINILM, "--data-dir",
                os.path.join(st.TMP, "device-flag"), "--listen", "127.0.0.1:0"]
        p = subprocess.run(base + ["--embedder-device", "tpu"], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"--embedder-device: unknown device 'tpu'", p.stderr)
        # The generator on the CPU, the embedder on cpu too (explicitly): the log says where it runs.
        s = rag_server(os.path.join(st.TMP, "device-flag"), "--device", "cpu", "--embedder-device", "cpu")
        self.assertIn("dim 384, on cpu with OpenBLAS", s.log_text())
        s.kill()
        # On a machine without a GPU, cuda is refused at start naming the flag (on a GPU machine the
        # cuda_rag_test parity test covers it).
        if not os.path.exists("/dev/nvidiactl"):
            p = subprocess.run(base + ["--embedder-device", "cuda"], capture_output=True, timeout=120)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(b"--embedder-device cuda: ", p.stderr)
            self.assertIn(b"use --embedder-device cpu or auto", p.stderr)


    def test_unwritable_data_dir_fails_at_start_with_a_clear_message(self):
        blocker = os.path.join(st.TMP, "not-a-directory")
        with open(blocker, "w") as f:
            f.write("x")
        p = subprocess.run([st.ARGS.server_bin, "--model", st.MODEL, "--listen", "127.0.0.1:0", "--embedder", MINILM,
                            "--data-dir", os.path.join(blocker, "data")], capture_output=True, timeout=300)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"cannot create the data directory", p.stderr)


class CrashDuringIngest(unittest.TestCase):
    def setUp(self):
        require(self)

    def test_kill_9_mid_ingest_keeps_every_acknowledged_document(self):
        data = os.path.join(st.TMP, "rag-crash")
        s = rag_server(data)
        s.retrieval.CreateCollection(rpb.CreateCollectionRequest(name="c", chunk_tokens=32, chunk_overlap_tokens=4),
                                     timeout=60)
        paras = paragraphs()
        docs = [rpb.Document(id=f"p{i}", text=t, metadata={"n": str(i)}) for i, t in enumerate(paras * 4)]
        acked = []
        error = []

        def run():
            try:
                for p in ingest_stream(s.retrieval, "c", docs, batch=3):
                    acked.append(p.documents)
            except st.grpc.RpcError as e:
                error.append(e)

        t = threading.Thread(target=run)
        t.start()
        st.wait_for(lambda: len(acked) >= 4, 600, "four acknowledged batches")
        os.kill(s.proc.pid, signal.SIGKILL)
        s.proc.wait()
        t.join(60)  # the client sees the connection drop (UNAVAILABLE) or is left waiting; either way:
        n = acked[-1]
        self.assertLess(n, len(docs), "the kill came after the whole ingest; nothing was tested")
        s2 = rag_server(data)
        try:
            info = s2.retrieval.ListCollections(rpb.ListCollectionsRequest(), timeout=60).collections[0]
            self.assertGreaterEqual(info.documents, n)
            # Every acknowledged document is there (DeleteDocuments counts the ids that existed) and its
            # chunks are back in the rebuilt index: its own text finds it first.
            probe = docs[n - 1]
            hits = s2.retrieval.Retrieve(rpb.RetrieveRequest(collection="c", query=probe.text[:200], top_k=1,
                                                             min_score=-1), timeout=120)
            self.assertIn(hits.passages[0].document_id, {probe.id} | {d.id for d in docs if d.text == probe.text})
            deleted = s2.retrieval.DeleteDocuments(
                rpb.DeleteDocumentsRequest(collection="c", ids=[d.id for d in docs[:n]]), timeout=120).deleted
            self.assertEqual(deleted, n)
        finally:
            s2.kill()


if __name__ == "__main__":
    st.main()  # the same command line as serving_test.py; runs the tests of this file
