#!/usr/bin/env python3
"""The OpenAI-compatible HTTP API (qrag-server --http-listen) driven by the official `openai` Python package
(PyPI, pinned; tests/fetch_openai.sh installs it into the cache, the ctest fixture `openai_sdk`) against the real
server serving the real SmolLM2-135M-Instruct GGUF and the all-MiniLM-L6-v2 embedder:

- chat, streaming chat (include_usage), completions, embeddings (base64 and float), models;
- the same seeded request answers the same text and usage over HTTP and over gRPC (grpcio stubs, as
  serving_test.py), and HTTP embeddings equal the Embed RPC's;
- errors as OpenAI error objects: bad parameter, unsupported parameter, unknown model, unknown route, wrong
  method, malformed JSON, oversized body (413), missing/wrong token (401), TLS;
- a client that disconnects mid-stream frees its KV blocks at once; /health 503 while draining, SIGTERM lets
  an HTTP stream finish;
- 20 connections trickling bytes and a client that never reads its stream delay neither a scrape nor a
  health check beyond 1 s.

usage: openai_test.py --server-bin PATH --run-bin PATH --make-model-bin PATH --cli-bin PATH
                      --proto-dir DIR --grpc-proto-dir DIR [unittest args]
"""
import base64
import http.client
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serving_test as st  # noqa: E402  (stub generation, Server, shared-data checks)
import rag_test as rt  # noqa: E402  (MiniLM location, State of the Union paragraphs, ingest)
import chat_test as ct  # noqa: E402  (SmolLM2 location)
import security_test as sec  # noqa: E402  (certificates made with the openssl command)

openai = None
SMOLLM2 = None
_skip = None
OPENAI_VERSION = "3.60.0"


def load_openai():
    """The SDK installed by tests/fetch_openai.sh, or None."""
    global openai
    cache = os.environ.get("QRAG_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "qrag")
    path = os.path.join(cache, "pylib", f"openai-{OPENAI_VERSION}")
    if not os.path.isdir(path):
        return None
    sys.path.insert(0, path)
    import openai as sdk  # noqa: E402
    openai = sdk
    return sdk


def setUpModule():
    global SMOLLM2, _skip
    ct.setUpModule()  # st's stubs and shared-data checks, MiniLM, SmolLM2
    SMOLLM2 = ct.SMOLLM2
    _skip = st._skip_reason
    if _skip is None and load_openai() is None:
        _skip = f"the openai package is missing (run tests/fetch_openai.sh: pip install openai=={OPENAI_VERSION})"
    st._skip_reason = _skip


def tearDownModule():
    st.tearDownModule()


class HttpServer(st.Server):
    """qrag-server with --http-listen 127.0.0.1:0 (and maybe --metrics-listen): the HTTP and metrics addresses
    from its log."""

    def __init__(self, *args):
        super().__init__("--http-listen", "127.0.0.1:0", *args)
        self.http = st.wait_for(lambda: self._logged("http on "), 60, "the 'http on' log line")
        self.metrics = self._logged("metrics on ")

    def _logged(self, prefix):
        for line in list(self.log):
            if prefix in line:
                return line.split(prefix, 1)[1].strip()
        return None

    def client(self, **kwargs):
        kwargs.setdefault("api_key", "unused")
        return openai.OpenAI(base_url=f"http://{self.http}/v1", max_retries=0, timeout=300, **kwargs)

    def raw(self, method, path, body=None, headers=None, address=None, timeout=60):
        """(status, headers, body bytes) of one plain HTTP request."""
        host, port = (address or self.http).rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def scrape(self):
        status, _, body = self.raw("GET", "/metrics", address=self.metrics)
        assert status == 200, status
        return body.decode()


def metric(text, name):
    """The sum of a Prometheus series over its labels."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def grpc_chat(*pairs, **kwargs):
    return st.pb.ChatRequest(messages=ct.msgs(*pairs), **kwargs)


class OpenAiApi(unittest.TestCase):
    """One server: SmolLM2 with its template, MiniLM and a small collection, HTTP and metrics."""

    server = None

    @classmethod
    def setUpClass(cls):
        if _skip is None:
            cls.data = os.path.join(st.TMP, "openai-api")
            # --prefix-cache off: the same request over HTTP and gRPC must do the same work (usage.tensor_ops
            # equal); with the cache the second of them would reuse the first's prompt (OpenAiPrefixCache).
            cls.server = HttpServer("--model", SMOLLM2, "--threads", "2", "--context", "1024", "--embedder", rt.MINILM,
                                    "--data-dir", cls.data, "--metrics-listen", "127.0.0.1:0", "--energy-meter",
                                    "none", "--max-message-bytes", "200000", "--prefix-cache", "off")
            cls.server.wait_serving(300)
            cls.server.retrieval = rt.rgrpc.RetrievalStub(cls.server.channel)
            cls.server.retrieval.CreateCollection(rt.rpb.CreateCollectionRequest(name="sotu"), timeout=60)
            # 30 paragraphs and those about the Supreme Court nominee: enough to retrieve from, quick to embed.
            docs = [rt.rpb.Document(id=f"p{i}", text=p) for i, p in enumerate(rt.paragraphs())
                    if i < 30 or "Supreme Court" in p or "Ketanji" in p]
            rt.ingest(cls.server.retrieval, "sotu", docs)

    def setUp(self):
        st.require_shared(self)
        self.client = self.server.client()
        self.model = self.server.inference.ListModels(st.pb.ListModelsRequest(), timeout=30).models[0].name

    def tearDown(self):
        if self.server is not None:
            self.client.close()

    # --- answers ------------------------------------------------------------------------------------------

    def test_chat_answers_like_grpc(self):
        r = self.client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0, max_tokens=48)
        self.assertEqual(r.object, "chat.completion")
        self.assertTrue(r.id.startswith("chatcmpl-"))
        self.assertEqual(r.model, self.model)
        choice = r.choices[0]
        self.assertEqual(choice.message.role, "assistant")
        self.assertIn("Paris", choice.message.content)
        self.assertEqual(choice.finish_reason, "stop")
        g = self.server.inference.Chat(grpc_chat(("user", "What is the capital of France?"), temperature=0,
                                                 max_tokens=48), timeout=120)
        self.assertEqual(choice.message.content, g.message.content)
        self.assertEqual(r.usage.prompt_tokens, g.usage.prompt_tokens)
        self.assertEqual(r.usage.prompt_tokens, 37)  # the rendered conversation (chat gold case single_user)
        self.assertEqual(r.usage.completion_tokens, g.usage.completion_tokens)
        self.assertEqual(r.usage.total_tokens, g.usage.prompt_tokens + g.usage.completion_tokens)
        extra = r.usage.model_extra
        self.assertEqual(extra["tensor_ops"], g.usage.tensor_ops)
        self.assertGreater(extra["tensor_ops"], 0)
        self.assertEqual(extra["energy_joules"], g.usage.energy_joules)  # --energy-meter none: 0 on both
        self.assertIn("timings", r.model_extra["qrag"])

    def test_seeded_sampling_is_the_same_text_over_http_and_grpc(self):
        messages = [{"role": "system", "content": "You are a poet."},
                    {"role": "user", "content": "Write two lines about the sea."}]
        r = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0.9, top_p=0.95,
                                                seed=1234, max_completion_tokens=40)
        g = self.server.inference.Chat(grpc_chat(("system", "You are a poet."),
                                                 ("user", "Write two lines about the sea."), temperature=0.9,
                                                 top_p=0.95, seed=1234, max_tokens=40), timeout=120)
        self.assertEqual(r.choices[0].message.content, g.message.content)
        self.assertEqual(r.usage.completion_tokens, g.usage.completion_tokens)
        self.assertEqual(r.usage.model_extra["tensor_ops"], g.usage.tensor_ops)
        again = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0.9,
                                                    top_p=0.95, seed=1234, max_completion_tokens=40)
        self.assertEqual(again.choices[0].message.content, r.choices[0].message.content)

    def test_streaming_chat_delivers_the_same_answer_and_usage(self):
        kwargs = dict(model=self.model, temperature=0, max_tokens=40,
                      messages=[{"role": "user", "content": "Name three colours."}])
        whole = self.client.chat.completions.create(**kwargs)
        chunks = list(self.client.chat.completions.create(stream=True, stream_options={"include_usage": True},
                                                          **kwargs))
        self.assertEqual(chunks[0].object, "chat.completion.chunk")
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        self.assertTrue(all(c.id == chunks[0].id for c in chunks))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, whole.choices[0].message.content)
        with_choices = [c for c in chunks if c.choices]
        self.assertEqual(with_choices[-1].choices[0].finish_reason, whole.choices[0].finish_reason)
        self.assertTrue(all(c.choices[0].finish_reason is None for c in with_choices[:-1]))
        usage = chunks[-1]
        self.assertEqual(usage.choices, [])
        self.assertEqual(usage.usage.completion_tokens, whole.usage.completion_tokens)
        self.assertEqual(usage.usage.prompt_tokens, whole.usage.prompt_tokens)
        self.assertTrue(all(c.usage is None for c in chunks[:-1]))
        # Without include_usage: no usage chunk; the SSE stream ends with [DONE] (the SDK stops there).
        plain = list(self.client.chat.completions.create(stream=True, **kwargs))
        self.assertTrue(all(c.choices for c in plain))
        self.assertEqual("".join(c.choices[0].delta.content or "" for c in plain), text)

    def test_raw_stream_is_server_sent_events_ending_in_done(self):
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5,
                           "temperature": 0, "stream": True})
        status, headers, data = self.server.raw("POST", "/v1/chat/completions", body,
                                                {"Content-Type": "application/json"})
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/event-stream"))
        events = [e for e in data.decode().split("\n\n") if e]
        self.assertTrue(all(e.startswith("data: ") for e in events), events)
        self.assertEqual(events[-1], "data: [DONE]")
        for e in events[:-1]:
            json.loads(e[len("data: "):])

    def test_completions_equal_generate(self):
        r = self.client.completions.create(model=self.model, prompt="The capital of France is", max_tokens=8,
                                           temperature=0, logprobs=2)
        self.assertEqual(r.object, "text_completion")
        g = self.server.inference.Generate(st.pb.GenerateRequest(prompt="The capital of France is", max_tokens=8,
                                                                 temperature=0, logprobs=2), timeout=120)
        self.assertEqual(r.choices[0].text, g.text)
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertEqual(r.usage.prompt_tokens, g.usage.prompt_tokens)
        self.assertEqual(r.usage.completion_tokens, 8)
        lp = r.choices[0].logprobs
        self.assertEqual(len(lp.tokens), 8)
        self.assertEqual("".join(lp.tokens).encode(), b"".join(t.token for t in g.logprobs))
        for mine, theirs in zip(lp.token_logprobs, g.logprobs):
            self.assertAlmostEqual(mine, theirs.logprob, places=5)
        self.assertEqual(len(lp.top_logprobs[0]), 2)
        # A list of one prompt is the same request; streamed, the same text.
        one = self.client.completions.create(model=self.model, prompt=["The capital of France is"], max_tokens=8,
                                             temperature=0)
        self.assertEqual(one.choices[0].text, g.text)
        streamed = list(self.client.completions.create(model=self.model, prompt="The capital of France is",
                                                       max_tokens=8, temperature=0, stream=True))
        self.assertEqual("".join(c.choices[0].text for c in streamed), g.text)
        self.assertEqual(streamed[-1].choices[0].finish_reason, "length")

    def test_chat_logprobs(self):
        r = self.client.chat.completions.create(model=self.model, messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=6, temperature=0, logprobs=True, top_logprobs=3)
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), r.usage.completion_tokens)
        self.assertEqual(b"".join(bytes(t.bytes) for t in content).decode(), r.choices[0].message.content)
        for t in content:
            self.assertEqual(len(t.top_logprobs), 3)
            self.assertAlmostEqual(t.top_logprobs[0].logprob, t.logprob, places=5)  # greedy: the top one

    def test_chat_without_max_tokens_answers_until_its_turn_ends(self):
        r = self.client.chat.completions.create(
            model=self.model, temperature=0,
            messages=[{"role": "user", "content": "Explain in a few sentences why the sky is blue."}])
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertGreater(r.usage.completion_tokens, 16)  # not cut at the gRPC default of 16

    def test_rag_extension(self):
        r = self.client.chat.completions.create(
            model=self.model, max_tokens=32, temperature=0,
            messages=[{"role": "user", "content": "Who did the President nominate to the Supreme Court?"}],
            extra_body={"rag": {"collection": "sotu", "top_k": 2}})
        passages = r.model_extra["qrag"]["passages"]
        self.assertEqual(len(passages), 2)
        self.assertTrue(any("Ketanji Brown Jackson" in p["text"] for p in passages))
        self.assertGreater(r.model_extra["qrag"]["timings"]["embed_seconds"], 0)
        streamed = list(self.client.chat.completions.create(
            model=self.model, max_tokens=8, temperature=0, stream=True,
            messages=[{"role": "user", "content": "Who did the President nominate to the Supreme Court?"}],
            extra_body={"rag": {"collection": "sotu", "top_k": 2}}))
        self.assertEqual([p["document_id"] for p in streamed[0].model_extra["qrag"]["passages"]],
                         [p["document_id"] for p in passages])
        with self.assertRaises(openai.NotFoundError) as ctx:
            self.client.chat.completions.create(model=self.model, messages=[{"role": "user", "content": "x"}],
                                                extra_body={"rag": {"collection": "nope"}})
        self.assertIn("nope", ctx.exception.message)

    def test_embeddings_equal_the_embed_rpc(self):
        texts = ["The sea is blue.", "Paris is the capital of France."]
        g = self.server.retrieval.Embed(rt.rpb.EmbedRequest(texts=texts), timeout=60)
        b64 = self.client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)  # the SDK asks for base64
        floats = self.client.embeddings.create(input=texts, encoding_format="float",
                                               model="all-MiniLM-L6-v2")
        for r in (b64, floats):
            self.assertEqual(len(r.data), 2)
            self.assertEqual(r.model, "all-MiniLM-L6-v2")
            for i, item in enumerate(r.data):
                self.assertEqual(item.index, i)
                self.assertEqual(len(item.embedding), 384)
                expected = struct.unpack(f"<{g.dim}f", struct.pack(f"<{g.dim}f", *g.embeddings[i].values))
                self.assertEqual(tuple(item.embedding), expected)
        self.assertGreater(b64.usage.prompt_tokens, 2 * 2)  # [CLS] ... [SEP] per text
        single = self.client.embeddings.create(model="all-MiniLM-L6-v2", input="The sea is blue.",
                                               encoding_format="float")
        self.assertEqual(single.data[0].embedding, floats.data[0].embedding)
        raw = json.loads(self.server.raw("POST", "/v1/embeddings", json.dumps(
            {"input": "The sea is blue.", "encoding_format": "base64"}))[2])
        decoded = struct.unpack("<384f", base64.b64decode(raw["data"][0]["embedding"]))
        self.assertEqual(list(decoded), floats.data[0].embedding)

    def test_models(self):
        models = {m.id: m for m in self.client.models.list()}
        self.assertIn(self.model, models)
        self.assertIn("all-MiniLM-L6-v2", models)
        m = self.client.models.retrieve(self.model)
        self.assertEqual(m.owned_by, "qrag")
        self.assertEqual(m.model_extra["qrag"]["context_length"], 1024)
        self.assertTrue(m.model_extra["qrag"]["chat"])
        with self.assertRaises(openai.NotFoundError):
            self.client.models.retrieve("no-such-model")

    def test_health(self):
        status, _, body = self.server.raw("GET", "/health")
        self.assertEqual((status, json.loads(body)), (200, {"status": "serving"}))

    # --- errors -------------------------------------------------------------------------------------------

    def assert_api_error(self, cls, status, param, fragment, call):
        with self.assertRaises(cls) as ctx:
            call()
        e = ctx.exception
        self.assertEqual(e.status_code, status)
        self.assertEqual(e.body.get("param") if isinstance(e.body, dict) else None, param, e.body)
        self.assertIn(fragment, e.message)
        return e

    def test_errors_are_openai_error_objects(self):
        chat = self.client.chat.completions.create
        msg = [{"role": "user", "content": "Hi"}]
        self.assert_api_error(openai.BadRequestError, 400, "temperature", "temperature",
                              lambda: chat(model=self.model, messages=msg, temperature=-1))
        self.assert_api_error(openai.BadRequestError, 400, "n", "n must be 1",
                              lambda: chat(model=self.model, messages=msg, n=2))
        self.assert_api_error(openai.BadRequestError, 400, "frequency_penalty", "repetition_penalty",
                              lambda: chat(model=self.model, messages=msg, frequency_penalty=0.5))
        self.assert_api_error(openai.BadRequestError, 400, "messages", "messages",
                              lambda: chat(model=self.model, messages=[]))
        self.assert_api_error(openai.BadRequestError, 400, "max_tokens", "max_tokens",
                              lambda: chat(model=self.model, messages=msg, max_tokens=5000))
        self.assert_api_error(openai.BadRequestError, 400, "tools", "tool calling",
                              lambda: chat(model=self.model, messages=msg,
                                           tools=[{"type": "function", "function": {"name": "f"}}]))
        self.assert_api_error(openai.BadRequestError, 400, "colour", "unrecognized request argument",
                              lambda: chat(model=self.model, messages=msg, extra_body={"colour": "blue"}))
        e = self.assert_api_error(openai.NotFoundError, 404, "model", "not served here",
                                  lambda: chat(model="gpt-9", messages=msg))
        self.assertEqual(e.code, "model_not_found")
        self.assert_api_error(openai.NotFoundError, 404, "model", "not an embedding model",
                              lambda: self.client.embeddings.create(model="text-embedding-3-small", input="x"))
        self.assert_api_error(openai.BadRequestError, 400, "dimensions", "384",
                              lambda: self.client.embeddings.create(model="all-MiniLM-L6-v2", input="x", dimensions=256))
        self.assert_api_error(openai.BadRequestError, 400, "prompt", "one prompt per request",
                              lambda: self.client.completions.create(model=self.model, prompt=["a", "b"]))
        # A server still serving what comes next.
        self.assertIn("Paris", chat(model=self.model, temperature=0, max_tokens=32, messages=[
            {"role": "user", "content": "What is the capital of France?"}]).choices[0].message.content)

    def test_raw_http_errors(self):
        status, _, body = self.server.raw("POST", "/v1/chat/completions", "{not json",
                                          {"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        self.assertIn("invalid JSON", json.loads(body)["error"]["message"])
        status, _, body = self.server.raw("GET", "/v1/nothing")
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(body)["error"]["type"], "not_found_error")
        status, headers, _ = self.server.raw("GET", "/v1/chat/completions")
        self.assertEqual(status, 405)
        self.assertEqual(headers["Allow"], "POST")
        # A body over --max-message-bytes (200000 here): 413 without reading it, the server unharmed.
        big = json.dumps({"model": self.model, "messages": [{"role": "user", "content": "x" * 300000}]})
        with self.assertRaises(openai.APIStatusError) as ctx:
            self.client.chat.completions.create(model=self.model,
                                                messages=[{"role": "user", "content": "x" * 300000}])
        self.assertEqual(ctx.exception.status_code, 413)
        status, _, _ = self.server.raw("POST", "/v1/chat/completions", big, {"Content-Type": "application/json"})
        self.assertEqual(status, 413)
        self.test_health()

    # --- disconnects and slow clients ------------------------------------------------------------------------

    def test_client_disconnect_mid_stream_frees_kv_at_once(self):
        before = metric(self.server.scrape(), "qrag_generated_tokens_total")
        host, port = self.server.http.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=60)
        body = json.dumps({"model": self.model, "prompt": "Once upon a time", "max_tokens": 900,
                           "temperature": 0, "stream": True}).encode()
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        got = b""
        while got.count(b"data: ") < 3:
            got += sock.recv(4096)
        s = self.server.stats()
        self.assertEqual(s.running, 1)
        sock.close()
        s = self.server.wait_idle(timeout=60)
        self.assertEqual(s.kv_blocks_free, s.kv_blocks_total)
        generated = metric(self.server.scrape(), "qrag_generated_tokens_total") - before
        self.assertLess(generated, 900)  # cancelled, not run to max_tokens

    def test_slow_clients_delay_neither_scrapes_nor_health(self):
        host, port = self.server.http.rsplit(":", 1)
        mhost, mport = self.server.metrics.rsplit(":", 1)
        stop = threading.Event()
        tricklers = []
        for i in range(20):  # 10 on the API port, 10 on the metrics port: one byte every 0.5 s
            tricklers.append(socket.create_connection((host, int(port)) if i % 2 else (mhost, int(mport)), timeout=60))

        def trickle():
            head = b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Slow: " + b"a" * 1000
            for k in range(len(head)):
                if stop.is_set():
                    return
                for t in tricklers:
                    try:
                        t.send(head[k:k + 1])
                    except OSError:
                        pass
                time.sleep(0.5)

        threading.Thread(target=trickle, daemon=True).start()
        # A client that asks for a long stream and never reads it.
        reader_less = socket.create_connection((host, int(port)), timeout=60)
        reader_less.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        body = json.dumps({"model": self.model, "prompt": "Once upon a time", "max_tokens": 300,
                           "temperature": 0, "stream": True, "logprobs": 5}).encode()
        reader_less.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                            str(len(body)).encode() + b"\r\n\r\n" + body)
        try:
            worst = 0.0
            for _ in range(10):
                for what in (lambda: self.server.raw("GET", "/health", timeout=5),
                             lambda: self.server.raw("GET", "/metrics", address=self.server.metrics, timeout=5)):
                    t0 = time.monotonic()
                    status, _, _ = what()
                    worst = max(worst, time.monotonic() - t0)
                    self.assertEqual(status, 200)
                time.sleep(0.2)
            self.assertLess(worst, 1.0)
        finally:
            stop.set()
            for t in tricklers:
                t.close()
            reader_less.close()
        self.server.wait_idle(timeout=120)


class OpenAiPrefixCache(unittest.TestCase):
    """usage.prompt_tokens_details.cached_tokens (the prefix cache is on by default; stories260K, blocks of 16)."""

    def setUp(self):
        st.require_shared(self)

    def test_cached_tokens_reported_like_grpc(self):
        s = HttpServer("--model", st.MODEL)
        try:
            s.wait_serving()
            client = s.client()
            prompt = "Once upon a time, there was a little girl named Lily who loved to play outside in the park"
            first = client.completions.create(model="stories260K", prompt=prompt, max_tokens=4, temperature=0)
            again = client.completions.create(model="stories260K", prompt=prompt, max_tokens=4, temperature=0)
            g = s.inference.Generate(st.pb.GenerateRequest(prompt=prompt, max_tokens=4, temperature=0), timeout=60)
            self.assertEqual(first.usage.prompt_tokens_details.cached_tokens, 0)
            cached = again.usage.prompt_tokens_details.cached_tokens
            self.assertGreater(cached, 0)
            self.assertEqual(cached % 16, 0)
            self.assertLess(cached, again.usage.prompt_tokens)
            self.assertEqual(g.usage.cached_prompt_tokens, cached)
            self.assertEqual(again.choices[0].text, first.choices[0].text)  # bit-identical output
            self.assertEqual(g.text, first.choices[0].text)
            self.assertLess(again.usage.model_extra["tensor_ops"], first.usage.model_extra["tensor_ops"])
        finally:
            s.kill()


class OpenAiSecurity(unittest.TestCase):
    """--auth-tokens and the TLS flags apply to HTTP as to gRPC (the tiny stories260K model)."""

    def setUp(self):
        st.require_shared(self)

    def test_bearer_tokens(self):
        tokens = os.path.join(st.TMP, "openai-tokens.txt")
        with open(tokens, "w") as f:
            f.write("\n".join(sec.TOKENS) + "\n")
        s = HttpServer("--model", st.MODEL, "--auth-tokens", tokens)
        try:
            s.wait_serving()
            self.assertEqual(s.raw("GET", "/health")[0], 200)  # open, like gRPC health
            good = s.client(api_key=sec.TOKENS[1])
            r = good.completions.create(model="stories260K", prompt="Once upon a time", max_tokens=4)
            self.assertEqual(r.usage.completion_tokens, 4)
            with self.assertRaises(openai.AuthenticationError) as ctx:
                s.client(api_key="wrong-token").models.list()
            self.assertEqual(ctx.exception.status_code, 401)
            status, headers, body = s.raw("GET", "/v1/models")  # no Authorization header at all
            self.assertEqual(status, 401)
            self.assertEqual(headers["WWW-Authenticate"], "Bearer")
            self.assertEqual(json.loads(body)["error"]["type"], "authentication_error")
        finally:
            s.kill()

    def test_tls(self):
        certs = sec.make_certificates(os.path.join(st.TMP, "openai-tls"))
        s = HttpServer("--model", st.MODEL, "--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"])
        try:
            host, port = s.http.rsplit(":", 1)
            context = ssl.create_default_context(cafile=certs["ca.pem"])
            st.wait_for(lambda: self._https_health(host, port, context) == 200, 120, "HTTPS health 200")
            with self.assertRaises(ssl.SSLError):  # a client that does not trust the CA
                self._https_health(host, port, ssl.create_default_context())
            # Plain HTTP to the TLS port gets no answer but a closed connection.
            with self.assertRaises((ConnectionError, http.client.HTTPException, OSError)):
                s.raw("GET", "/health", timeout=10)
            with self.assertRaises(ssl.SSLError):  # the CA-signed certificate is checked against the CA
                self._https_health(host, port, ssl.create_default_context(cafile=certs["rogue.pem"]))
        finally:
            s.kill()

    @staticmethod
    def _https_health(host, port, context):
        conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status
        finally:
            conn.close()


class OpenAiDrain(unittest.TestCase):
    """SIGTERM: /health turns 503 "draining", new requests 503, and a stream in flight finishes."""

    def setUp(self):
        st.require_shared(self)

    def test_sigterm_drains_http(self):
        s = HttpServer("--model", SMOLLM2, "--threads", "2", "--context", "512", "--drain-seconds", "60")
        try:
            s.wait_serving(300)
            client = s.client()
            model = s.inference.ListModels(st.pb.ListModelsRequest(), timeout=30).models[0].name
            stream = client.completions.create(model=model, prompt="Once upon a time",
                                               max_tokens=60, temperature=0, stream=True)
            first = next(iter(stream))
            s.signal(signal.SIGTERM)
            st.wait_for(lambda: s.raw("GET", "/health")[0] == 503, 30, "/health 503 while draining")
            status, _, body = s.raw("GET", "/health")
            self.assertEqual(json.loads(body), {"status": "draining"})
            with self.assertRaises(openai.APIStatusError) as ctx:
                client.completions.create(model=model, prompt="x", max_tokens=2)
            self.assertEqual(ctx.exception.status_code, 503)
            rest = list(stream)
            self.assertEqual(rest[-1].choices[0].finish_reason, "length")
            text = first.choices[0].text + "".join(c.choices[0].text for c in rest)
            self.assertGreater(len(text), 0)
            self.assertEqual(s.wait_exit(60), 0)
        finally:
            s.kill()


if __name__ == "__main__":
    st.main()
