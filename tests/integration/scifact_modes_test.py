#!/usr/bin/env python3
"""Search modes on real data through the real qrag-server (stories260K generator, all-MiniLM-L6-v2 embedder):
a SciFact subset — the first 50 test queries (by id) and a corpus of their judged documents plus every 20th
other document — ingested over gRPC (title + " " + text, chunks of up to 254 tokens), every query retrieved in
each mode with group_by_document; nDCG@10 scored as BEIR does (tests/integration/scifact_eval.py).

What it holds (the whole corpus's figures: bench/scifact_server.py, docs/benchmarks.md): BM25 and dense each
rank well on their own, hybrid fusion is at least as good as the better of the two, and the results are the
same through a server restarted on the same data directory (the keyword index is durable, not rebuilt).

usage: scifact_modes_test.py --server-bin PATH ... (as serving_test.py) [unittest args]
"""
import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rag_test as rt  # noqa: E402  (the MiniLM / shared-data checks, rag_server)
import scifact_eval  # noqa: E402
import serving_test as st  # noqa: E402

SCIFACT = os.path.join(st.SHARED, "data", "scifact")


def setUpModule():
    rt.setUpModule()
    if rt._skip is None and not os.path.exists(os.path.join(SCIFACT, "corpus.jsonl")):
        st._skip_reason = f"shared data missing: {SCIFACT}"


def tearDownModule():
    rt.tearDownModule()


def subset():
    corpus, queries, qrels = scifact_eval.load(SCIFACT)
    qids = sorted(qrels, key=int)[:50]
    judged = {d for q in qids for d in qrels[q]}
    others = [d for d in sorted(corpus, key=int) if d not in judged][::20]
    docs = {d: corpus[d] for d in sorted(judged | set(others))}
    return docs, {q: queries[q] for q in qids}, {q: qrels[q] for q in qids}


class SciFactModes(unittest.TestCase):
    def setUp(self):
        st.require_shared(self)
        self.data = os.path.join(st.TMP, "scifact-modes")

    def test_hybrid_at_least_the_better_of_bm25_and_dense(self):
        docs, queries, qrels = subset()
        server = rt.rag_server(self.data)
        modes = (("dense", rt.rpb.SEARCH_MODE_DENSE), ("bm25", rt.rpb.SEARCH_MODE_BM25),
                 ("hybrid", rt.rpb.SEARCH_MODE_HYBRID))
        ingested, _, tokens = scifact_eval.ingest(rt.rpb, server.retrieval, "scifact", docs)
        self.assertEqual(ingested, len(docs))
        self.assertGreater(tokens, sum(len(t.split()) for t in docs.values()))  # WordPieces, at least one a word
        scores, runs = {}, {}
        for name, mode in modes:
            runs[name], _ = scifact_eval.retrieve_all(rt.rpb, server.retrieval, "scifact", queries, mode, top_k=10)
            scores[name] = scifact_eval.score(runs[name], qrels)[0]
        print(f"SciFact subset ({len(docs)} documents, {len(queries)} queries) nDCG@10: "
              + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()), file=sys.stderr)
        # Each ranker alone is far above chance on its own (the judged documents are 1/4 of this corpus; a
        # broken ranker scores near 0).
        self.assertGreater(scores["dense"], 0.6)
        self.assertGreater(scores["bm25"], 0.6)
        self.assertGreaterEqual(scores["hybrid"], max(scores["dense"], scores["bm25"]))
        # Grouped: one passage per document.
        for ranked in runs["hybrid"].values():
            self.assertEqual(len(ranked), len(set(ranked)))
        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait_exit(120), 0)
        # Restarted on the same data: the same rankings (the keyword index is on disk with the chunks).
        server = rt.rag_server(self.data)
        again, _ = scifact_eval.retrieve_all(rt.rpb, server.retrieval, "scifact", queries, rt.rpb.SEARCH_MODE_HYBRID,
                                             top_k=10)
        self.assertEqual(again, runs["hybrid"])
        self.assertNotIn("predates keyword search", server.log_text())
        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait_exit(120), 0)


if __name__ == "__main__":
    st.main()
