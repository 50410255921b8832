#!/usr/bin/env python3
"""Metrics end to end: the real qrag-server with --metrics-listen, scraped over HTTP, linted by `promtool check
metrics`, and scraped by a real Prometheus server (Debian's `prometheus`) whose HTTP API is queried for the
latency histograms and the tensor-ops counter. The ops counter and the response's usage.tensor_ops must equal
the ops worked out here by hand from the model file's header: 2*M*N*K of every projection and the classifier,
plus attention's QK^T and PV.

usage: metrics_test.py --server-bin PATH --run-bin PATH --make-model-bin PATH --cli-bin PATH
                       --proto-dir DIR --grpc-proto-dir DIR [--prometheus-bin PATH --promtool-bin PATH]

Everything listens on 127.0.0.1. Every wait is bounded. Nothing asserts on speed. Shared data (stories260K) from
$QRAG_SHARED_DIR or ../shared: missing skips, or fails under QRAG_REQUIRE_SHARED=1. A missing prometheus or
promtool binary fails (they are in deploy/install-deps.sh).
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serving_test as st  # noqa: E402  (stub generation, the Server wrapper, shared-data paths)

ARGS = None
PROMPT = "Once upon a time, there was a little girl"
MAX_TOKENS = 24


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def llama2c_shape(path):
    """dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len of a legacy llama2.c checkpoint."""
    with open(path, "rb") as f:
        dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack("<7i", f.read(28))
    return dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=abs(vocab),
                seq_len=seq_len)


def analytic_ops(shape, prompt_tokens, completion_tokens, cached_tokens=0):
    """Tensor ops of one greedy request that ended by length, counted by hand.

    The engine runs the prompt (positions 0..P-1, but the first `cached_tokens` the prefix cache held), then feeds every generated token but the last (positions
    P..P+C-2); each of the C generated tokens took one classifier row. Per token per layer: q (dim x dim),
    k and v (dim x kv_dim), o (dim x dim), gate and up (dim x hidden), down (hidden x dim), 2 ops per
    multiply-add; attention at position p: QK^T and PV over p+1 keys, 2*2*(p+1)*head_dim per head."""
    d, h, L = shape["dim"], shape["hidden"], shape["layers"]
    head_dim = d // shape["heads"]
    kv_dim = shape["kv_heads"] * head_dim
    per_token = L * 2 * (d * d + 2 * d * kv_dim + d * d + 3 * d * h)
    positions = range(cached_tokens, prompt_tokens + completion_tokens - 1)
    attention = sum(L * 2 * 2 * (p + 1) * head_dim * shape["heads"] for p in positions)
    classifier = completion_tokens * 2 * d * shape["vocab"]
    return len(positions) * per_token + attention + classifier


def parse_exposition(text):
    """{(name, frozenset(labels.items())): value} of the text exposition format."""
    series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)$', line)
        assert m, f"unparsable exposition line: {line!r}"
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        series[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return series


def values(series, name, **labels):
    return [v for (n, ls), v in series.items() if n == name and set(labels.items()) <= set(ls)]


class MetricsServer(st.Server):
    """st.Server that also waits for the "metrics on HOST:PORT" line."""

    def __init__(self, *args):
        super().__init__(*args)
        line = st.wait_for(lambda: next((l for l in self.log if "metrics on " in l), None), 60, "metrics address")
        self.metrics_address = line.split("metrics on ", 1)[1].strip()

    def scrape(self):
        return http_get(f"http://{self.metrics_address}/metrics")

    def energy_meter_line(self):
        return st.wait_for(lambda: next((l for l in self.log if "energy meter: " in l), None), 60, "meter log line")


class Prometheus:
    """A real Prometheus server on 127.0.0.1:<free port>, scraping `target` every second, data in a temp dir."""

    def __init__(self, tmp, target):
        self.dir = tempfile.mkdtemp(prefix="prometheus-", dir=tmp)
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: qrag\n    scrape_interval: 1s\n    scrape_timeout: 1s\n"
                    f"    static_configs:\n      - targets: ['{target}']\n")
        self.port = free_port()
        self.log_path = os.path.join(self.dir, "prometheus.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [ARGS.prometheus_bin, f"--config.file={config}", f"--storage.tsdb.path={self.dir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        st.wait_for(self._ready, 60, "Prometheus /-/ready")

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}: {self.log_text()}")
        try:
            return http_get(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) is not None
        except OSError:
            return False

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def query(self, promql):
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        body = json.loads(http_get(url))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def setUpModule():
    st.ARGS = ARGS
    st.setUpModule()


def tearDownModule():
    st.tearDownModule()


class LiveMetrics(unittest.TestCase):
    def setUp(self):
        st.require_shared(self)

    def test_promtool_prometheus_and_exact_ops(self):
        server = MetricsServer("--model", st.MODEL, "--metrics-listen", "127.0.0.1:0", "--threads", "1")
        server.wait_serving()
        shape = llama2c_shape(st.MODEL)

        # Before any request: the series exist, at zero; promtool accepts the exposition.
        first = server.scrape()
        self.promtool(first)
        s = parse_exposition(first)
        self.assertEqual(values(s, "qrag_tensor_ops_total", model="stories260K", precision="fp32"), [0.0])
        self.assertEqual(values(s, "qrag_kv_blocks_used"), [0.0])
        self.assertGreater(values(s, "qrag_kv_blocks_free")[0], 0)

        # One greedy request that ends by length: its usage carries the exact ops.
        reply = server.inference.Generate(
            st.request(PROMPT, temperature=0.0, max_tokens=MAX_TOKENS), timeout=120)
        self.assertEqual(reply.finish_reason, "length")
        self.assertEqual(reply.usage.completion_tokens, MAX_TOKENS)
        expected_ops = analytic_ops(shape, reply.usage.prompt_tokens, reply.usage.completion_tokens,
                                    reply.usage.cached_prompt_tokens)
        self.assertGreater(expected_ops, 0)
        self.assertEqual(reply.usage.tensor_ops, expected_ops)

        meter = server.energy_meter_line()
        has_meter = "energy meter: none" not in meter
        if has_meter:
            self.assertGreater(reply.usage.energy_joules, 0)
        else:
            self.assertEqual(reply.usage.energy_joules, 0)
            self.assertIn("no energy meter", meter)

        # Errors are counted by outcome: one refused by the engine (past the context), one by validation.
        with self.assertRaises(st.grpc.RpcError) as e:
            server.inference.Generate(st.request(PROMPT, max_tokens=1_000_000), timeout=60)
        self.assertEqual(e.exception.code(), st.grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(st.grpc.RpcError) as e:
            server.inference.Generate(st.request("", max_tokens=4), timeout=60)
        self.assertEqual(e.exception.code(), st.grpc.StatusCode.INVALID_ARGUMENT)
        server.wait_idle()

        text = server.scrape()
        self.promtool(text)
        s = parse_exposition(text)
        self.assertEqual(sum(values(s, "qrag_tensor_ops_total", model="stories260K")), expected_ops)
        self.assertEqual(values(s, "qrag_requests_total", outcome="ok"), [1.0])
        self.assertEqual(values(s, "qrag_requests_total", outcome="invalid_argument"), [2.0])
        self.assertEqual(values(s, "qrag_generated_tokens_total"), [float(MAX_TOKENS)])
        self.assertEqual(values(s, "qrag_prompt_tokens_total"), [float(reply.usage.prompt_tokens)])
        self.assertEqual(values(s, "qrag_request_duration_seconds_count"), [1.0])
        self.assertEqual(values(s, "qrag_time_to_first_token_seconds_count"), [1.0])
        self.assertEqual(values(s, "qrag_inter_token_latency_seconds_count"), [float(MAX_TOKENS - 1)])
        self.assertEqual(values(s, "qrag_prefill_step_seconds_count"), [1.0])  # the prompt fits one chunk
        self.assertEqual(values(s, "qrag_decode_step_seconds_count"), [float(MAX_TOKENS - 1)])
        self.assertEqual(values(s, "qrag_request_generated_tokens_sum"), [float(MAX_TOKENS)])
        self.assertEqual(values(s, "qrag_kv_blocks_used"), [0.0])
        energy_names = {n for (n, _) in s if "energy" in n or "power" in n or "per_watt" in n or "per_joule" in n}
        if has_meter:
            self.assertIn("qrag_attributed_energy_joules_total", energy_names)
        else:
            self.assertEqual(energy_names, set(), "without a meter the energy series must be absent")

        # A real Prometheus scrapes the server; its HTTP API answers for the histograms and the ops counter.
        prom = Prometheus(st.TMP, server.metrics_address)
        try:
            def ops_in_prometheus():
                r = prom.query('sum(qrag_tensor_ops_total{job="qrag",model="stories260K"})')
                return r and float(r[0]["value"][1]) == expected_ops and r
            st.wait_for(ops_in_prometheus, 60, "Prometheus to hold the ops counter")
            up = prom.query('up{job="qrag"}')
            self.assertEqual(float(up[0]["value"][1]), 1.0)
            for histogram in ("qrag_request_duration_seconds", "qrag_time_to_first_token_seconds",
                              "qrag_inter_token_latency_seconds", "qrag_queue_time_seconds",
                              "qrag_decode_step_seconds", "qrag_prefill_step_seconds"):
                buckets = prom.query(f'{histogram}_bucket{{job="qrag"}}')
                self.assertGreater(len(buckets), 5, histogram)
                self.assertIn("+Inf", {b["metric"]["le"] for b in buckets}, histogram)
                count = prom.query(f'{histogram}_count{{job="qrag"}}')
                self.assertGreater(float(count[0]["value"][1]), 0, histogram)
            # A percentile computes from the buckets (the dashboard's query form): finite and positive.
            p50 = prom.query('histogram_quantile(0.5, sum by (le) (qrag_request_duration_seconds_bucket{job="qrag"}))')
            self.assertGreater(float(p50[0]["value"][1]), 0)
            by_outcome = {r["metric"]["outcome"]: float(r["value"][1])
                          for r in prom.query('qrag_requests_total{job="qrag"}')}
            self.assertEqual(by_outcome, {"ok": 1.0, "invalid_argument": 2.0})
            self.check_dashboard(prom, s, has_meter)
        finally:
            prom.stop()

        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait_exit(60), 0)

    def check_dashboard(self, prom, scraped, has_meter):
        """Every query of deploy/grafana/qrag-dashboard.json parses and runs on the real Prometheus, and names
        only series the server exports (the energy ones only when it has a meter)."""
        with open(os.path.join(st.REPO, "deploy", "grafana", "qrag-dashboard.json")) as f:
            dashboard = json.load(f)
        exported = {n for (n, _) in scraped}
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        self.assertGreaterEqual(len(exprs), 14)
        for expr in exprs:
            promql = expr.replace("$__rate_interval", "1m").replace("$job", ".*").replace("$model", ".*")
            prom.query(promql)  # asserts status "success"
            for name in re.findall(r"\bqrag_[a-z_]+", expr):
                energy = re.search(r"energy|power|per_watt|per_joule", name)
                if has_meter or not energy:
                    self.assertIn(name, exported, f"dashboard query names an unknown series: {expr}")
        p = subprocess.run([ARGS.promtool_bin, "check", "config", os.path.join(st.REPO, "deploy", "prometheus.yml")],
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())

    def promtool(self, exposition):
        p = subprocess.run([ARGS.promtool_bin, "check", "metrics"], input=exposition.encode(), capture_output=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, f"promtool check metrics: {p.stdout.decode()}{p.stderr.decode()}")


class SlowClients(unittest.TestCase):
    """Issue "Reliability" item 3: slow or stalled HTTP clients must not hold the metrics endpoint. The old
    exposer served one connection at a time with a 5 s timeout that restarted at every byte, so one client
    sending a byte every 4 s blocked every scrape for as long as it liked."""

    def setUp(self):
        st.require_shared(self)

    def test_trickling_and_silent_clients_do_not_delay_a_scrape(self):
        server = MetricsServer("--model", st.MODEL, "--metrics-listen", "127.0.0.1:0", "--threads", "1")
        server.wait_serving()
        host, port = server.metrics_address.rsplit(":", 1)
        stop = threading.Event()
        socks = []

        def trickle(sock):
            request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"  # never the final blank line
            for i in range(len(request)):
                if stop.wait(0.5):
                    return
                try:
                    sock.send(request[i:i + 1])
                except OSError:
                    return  # the server dropped us: the intended outcome for a client this slow

        threads = []
        try:
            for i in range(20):
                sock = socket.create_connection((host, int(port)), timeout=10)
                socks.append(sock)
                threads.append(threading.Thread(target=trickle, args=(sock,), daemon=True))
                threads[-1].start()
            for i in range(10):  # connections that never send a byte
                socks.append(socket.create_connection((host, int(port)), timeout=10))
            time.sleep(1.0)  # every slow connection is open and mid-request
            for attempt in range(3):
                started = time.monotonic()
                text = server.scrape()
                elapsed = time.monotonic() - started
                self.assertIn("qrag_requests_total", text)
                # The bound the issue sets; the old exposer never answered while a client trickled.
                self.assertLess(elapsed, 1.0, f"scrape {attempt} took {elapsed:.2f} s behind 30 slow clients")
                health = server.health.Check(st.health_pb.HealthCheckRequest(), timeout=1.0)
                self.assertEqual(health.status, st.health_pb.HealthCheckResponse.SERVING)
                time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(5)
            for sock in socks:
                sock.close()
        # A stalled client is dropped on time (5 s for the whole exchange), not kept forever.
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.send(b"GET /met")
        sock.settimeout(10)  # a recv still waiting after 10 s raises: the stalled connection was kept
        self.assertEqual(sock.recv(100), b"", "the server must close a connection that stalls mid-request")
        sock.close()
        self.assertIn("qrag_requests_total", server.scrape())


class MeteredServers(unittest.TestCase):
    """The energy path end to end without the hardware: the server's NVML meter dlopen()s the fake
    libnvidia-ml (tests/metrics/fake_nvml.cc) drawing a constant 250 W, or its RAPL meter reads a powercap tree
    this test keeps writing."""

    def setUp(self):
        st.require_shared(self)

    def generate_concurrently(self, server, n):
        replies, errors = [None] * n, []

        def one(i):
            try:
                replies[i] = server.inference.Generate(
                    st.request(PROMPT, temperature=0.0, max_tokens=8 + 4 * i), timeout=120)
            except Exception as e:  # noqa: BLE001  (reported below)
                errors.append(e)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        self.assertEqual(errors, [])
        return replies

    def test_fake_nvml_energy_attribution_and_efficiency_gauges(self):
        os.environ["QRAG_FAKE_NVML_POWER_MW"] = "250000"
        try:
            server = MetricsServer("--model", st.MODEL, "--metrics-listen", "127.0.0.1:0", "--threads", "1",
                                   "--energy-meter", "nvml", "--nvml-library", ARGS.fake_nvml,
                                   "--energy-sample-ms", "20")
        finally:
            del os.environ["QRAG_FAKE_NVML_POWER_MW"]
        server.wait_serving()
        self.assertIn("energy meter: nvml: Fake H200 (GPU 0), sampled every 20ms", server.energy_meter_line())
        replies = self.generate_concurrently(server, 4)
        server.wait_idle()
        for r in replies:
            self.assertGreater(r.usage.energy_joules, 0, r.usage)
            self.assertEqual(r.usage.tensor_ops,
                             analytic_ops(llama2c_shape(st.MODEL), r.usage.prompt_tokens, r.usage.completion_tokens,
                                          r.usage.cached_prompt_tokens))
        # The device energy counter grows between two samples of the meter's thread (every 20 ms), not with
        # the requests: wait (up to 10 s) until it has, so a fast run is not read before the second sample.
        deadline = time.time() + 10
        while True:
            text = server.scrape()
            s = parse_exposition(text)
            if values(s, "qrag_gpu_energy_joules_total")[0] > 0 or time.time() > deadline:
                break
            time.sleep(0.05)
        self.promtool(text)
        attributed = values(s, "qrag_attributed_energy_joules_total")[0]
        charged = sum(r.usage.energy_joules for r in replies)
        self.assertAlmostEqual(charged, attributed, delta=0.01 * attributed)  # the shares sum to the metered energy
        self.assertEqual(values(s, "qrag_gpu_power_watts"), [250.0])
        self.assertGreater(values(s, "qrag_gpu_energy_joules_total")[0], 0)
        self.assertEqual(values(s, "qrag_request_energy_joules_count"), [4.0])
        self.assertEqual(values(s, "qrag_generated_token_energy_joules_count"), [4.0])
        self.assertAlmostEqual(values(s, "qrag_request_energy_joules_sum")[0], charged, delta=1e-6 * charged)
        # The window's gauges appear with the next samples (every 20 ms): exact ops over metered joules.
        def gauges():
            g = parse_exposition(server.scrape())
            opw = values(g, "qrag_ops_per_watt", precision="fp32")
            tpj = values(g, "qrag_tokens_per_joule")
            return opw and tpj and opw[0] > 0 and tpj[0] > 0 and (opw[0], tpj[0])
        st.wait_for(gauges, 30, "qrag_ops_per_watt and qrag_tokens_per_joule")
        server.kill()

    def test_fake_rapl_cpu_energy_series(self):
        root = tempfile.mkdtemp(prefix="powercap-", dir=st.TMP)
        zone = os.path.join(root, "intel-rapl:0")
        os.makedirs(zone)
        with open(os.path.join(zone, "name"), "w") as f:
            f.write("package-0\n")
        with open(os.path.join(zone, "max_energy_range_uj"), "w") as f:
            f.write("262143328850\n")
        stop = threading.Event()

        def write_energy(uj):
            tmp = os.path.join(zone, "energy_uj.tmp")
            with open(tmp, "w") as f:
                f.write(f"{uj}\n")
            os.replace(tmp, os.path.join(zone, "energy_uj"))  # atomic: the meter never reads half a number

        def tick():  # 1 J every 10 ms of this thread's loop
            uj = 0
            while not stop.is_set():
                uj += 1_000_000
                write_energy(uj)
                time.sleep(0.01)
        write_energy(0)
        writer = threading.Thread(target=tick, daemon=True)
        writer.start()
        try:
            server = MetricsServer("--model", st.MODEL, "--metrics-listen", "127.0.0.1:0", "--threads", "1",
                                   "--energy-meter", "rapl", "--powercap-root", root, "--energy-sample-ms", "20")
            server.wait_serving()
            self.assertIn("energy meter: rapl: package-0", server.energy_meter_line())
            self.generate_concurrently(server, 2)
            server.wait_idle()
            def energy():
                g = parse_exposition(server.scrape())
                j = values(g, "qrag_cpu_energy_joules_total")
                w = values(g, "qrag_cpu_power_watts")
                return j and w and j[0] > 0 and w[0] > 0
            st.wait_for(energy, 30, "qrag_cpu_energy_joules_total and qrag_cpu_power_watts > 0")
            text = server.scrape()
            self.promtool(text)
            self.assertNotIn("qrag_gpu_", text)
            server.kill()
        finally:
            stop.set()
            writer.join(10)

    def promtool(self, exposition):
        LiveMetrics.promtool(self, exposition)


class BadMetricsFlags(unittest.TestCase):
    def setUp(self):
        st.require_shared(self)

    def run_server(self, *args):
        return subprocess.run([ARGS.server_bin, "--model", st.MODEL, "--listen", "127.0.0.1:0", *args],
                              capture_output=True, timeout=60)

    def test_bad_flags_exit_with_a_message(self):
        p = self.run_server("--metrics-listen", "nonsense")
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("metrics address 'nonsense' is not HOST:PORT", p.stderr.decode())
        p = self.run_server("--energy-meter", "dcgm")
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("--energy-meter must be auto, nvml, rapl or none", p.stderr.decode())
        p = self.run_server("--energy-sample-ms", "0")
        self.assertEqual(p.returncode, 2, p.stderr)

    def test_metrics_port_in_use_exits_1(self):
        server = MetricsServer("--model", st.MODEL, "--metrics-listen", "127.0.0.1:0")
        p = self.run_server("--metrics-listen", server.metrics_address)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(f"cannot serve metrics on {server.metrics_address}", p.stderr.decode())
        server.kill()

    def test_requested_meter_that_is_absent_exits_1(self):
        if not os.path.exists("/sys/class/powercap"):
            p = self.run_server("--energy-meter", "rapl")
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("/sys/class/powercap does not exist", p.stderr.decode())
        nvml = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True).stdout.decode()
        if "libnvidia-ml.so.1" not in nvml:
            p = self.run_server("--energy-meter", "nvml")
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("cannot load libnvidia-ml.so.1", p.stderr.decode())

    def test_energy_meter_none_logs_why_once(self):
        server = MetricsServer("--model", st.MODEL, "--metrics-listen", "127.0.0.1:0", "--energy-meter", "none")
        server.wait_serving()
        lines = [l for l in server.log if "energy meter" in l]
        self.assertEqual(lines, ["qrag-server: energy meter: none (energy meter disabled (--energy-meter none)); "
                                 "energy metrics absent, usage energy_joules 0"])
        self.assertNotIn("qrag_cpu_power_watts", server.scrape())
        server.kill()


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    for flag in ("--server-bin", "--run-bin", "--make-model-bin", "--cli-bin", "--proto-dir", "--grpc-proto-dir"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--prometheus-bin", default=shutil.which("prometheus") or "prometheus")
    parser.add_argument("--promtool-bin", default=shutil.which("promtool") or "promtool")
    parser.add_argument("--fake-nvml", required=True, help="the fake libnvidia-ml of tests/metrics/fake_nvml.cc")
    ARGS, rest = parser.parse_known_args()
    for tool in (ARGS.prometheus_bin, ARGS.promtool_bin):
        if shutil.which(tool) is None:
            sys.exit(f"metrics_test: {tool} not found: install Debian's prometheus package (deploy/install-deps.sh)")
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
