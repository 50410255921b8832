"""BEIR SciFact through a real qrag-server's gRPC API: ingest the corpus (title + " " + text per document), then
retrieve every test query with group_by_document (documents ranked by their best chunk) and score nDCG@10 and
recall@100 with pytrec_eval's definitions (gain = relevance, log2 discount, ideal DCG over the judged
documents, a retrieved document whose id equals the query's skipped as BEIR's ignore_identical_ids does).

Used by tests/integration/scifact_modes_test.py (a subset, in CI) and bench/scifact_server.py (the whole corpus).
"""
import json
import math
import os
import time


def load(scifact_dir):
    """(corpus {id: text}, queries {id: text}, qrels {query id: {doc id: relevance}}) of the test split."""
    corpus = {}
    with open(os.path.join(scifact_dir, "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            corpus[d["_id"]] = (d["title"] + " " + d["text"]).strip()
    queries = {}
    with open(os.path.join(scifact_dir, "queries.jsonl"), encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            queries[q["_id"]] = q["text"]
    qrels = {}
    with open(os.path.join(scifact_dir, "qrels", "test.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, rel = line.rstrip("\n").split("\t")
            if int(rel) > 0:
                qrels.setdefault(qid, {})[did] = int(rel)
    return corpus, {q: queries[q] for q in qrels}, qrels


def ingest(rpb, stub, collection, corpus, batch=32, chunk_tokens=254, chunk_overlap=32, timeout=7200):
    """Creates `collection` and ingests `corpus` ({id: text}) in batches; returns (documents, seconds, tokens
    encoded)."""
    stub.CreateCollection(rpb.CreateCollectionRequest(name=collection, chunk_tokens=chunk_tokens,
                                                      chunk_overlap_tokens=chunk_overlap), timeout=60)
    items = sorted(corpus.items())

    def requests():
        for i in range(0, len(items), batch):
            yield rpb.IngestRequest(collection=collection if i == 0 else "",
                                    documents=[rpb.Document(id=k, text=v) for k, v in items[i:i + batch]])
    t0 = time.perf_counter()
    last = None
    for last in stub.Ingest(requests(), timeout=timeout):
        pass
    seconds = time.perf_counter() - t0
    return (last.documents, seconds, last.tokens) if last is not None else (0, seconds, 0)


def embed_rate(rpb, stub, texts, batch=256):
    """(tokens, seconds) of the Embed RPC over `texts` (each truncated by the server to the encoder's length)."""
    tokens, t0 = 0, time.perf_counter()
    for i in range(0, len(texts), batch):
        tokens += stub.Embed(rpb.EmbedRequest(texts=texts[i:i + batch]), timeout=3600).tokens
    return tokens, time.perf_counter() - t0


def retrieve_all(rpb, stub, collection, queries, mode, top_k=100):
    """{query id: [doc id, ...] best first}, and the seconds per query."""
    runs, t0 = {}, time.perf_counter()
    for qid, text in sorted(queries.items()):
        r = stub.Retrieve(rpb.RetrieveRequest(collection=collection, query=text, top_k=top_k, min_score=-1,
                                              mode=mode, group_by_document=True), timeout=600)
        runs[qid] = [p.document_id for p in r.passages if p.document_id != qid]
    return runs, (time.perf_counter() - t0) / max(1, len(queries))


def score(runs, qrels):
    """(nDCG@10, recall@100), averaged over the queries of `qrels`."""
    ndcg = recall = 0.0
    for qid, rel in qrels.items():
        ranked = runs.get(qid, [])
        dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
        ideal = sorted(rel.values(), reverse=True)[:10]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        ndcg += dcg / idcg if idcg > 0 else 0.0
        recall += len(set(ranked[:100]) & set(rel)) / len(rel)
    return ndcg / len(qrels), recall / len(qrels)
