#!/usr/bin/env python3
"""Runs the real qrag-quant binary as a user would: bad usage, the study, quantized checkpoints served by the
real qrag-run, and the report.

usage: qrag_quant_test.py PATH/TO/qrag-quant PATH/TO/qrag-run [PATH/TO/qrag-server PATH/TO/qrag]
(with the server and client binaries, a quantized checkpoint is also served by the real qrag-server)
Shared data: $QRAG_SHARED_DIR, else ../shared beside the repository. Missing data skips the tests that need
it, or fails them when QRAG_REQUIRE_SHARED=1.
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import unittest

QUANT = None
RUN = None
SERVER = None
CLI = None
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import shared_data  # noqa: E402  (tests/shared_data.py)
SHARED = shared_data.SHARED
MODEL = os.path.join(SHARED, "models", "stories260K", "stories260K.bin")


def require_shared(test):
    shared_data.require(test, MODEL)


def quant(*args):
    return subprocess.run([QUANT, *args], capture_output=True, text=True, timeout=600)


def run(*args):
    proc = subprocess.run([RUN, *args], capture_output=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"qrag-run {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()}")
    return proc.stdout


class BadUsage(unittest.TestCase):
    CASES = [
        ([], "a command is required"),
        (["squash"], "unknown command 'squash'"),
        (["study", "--bits", "1"], "--bits must be in 2..16"),
        (["study", "--bits", "four"], "--bits: 'four' is not a valid number"),
        (["study", "--clip", "best"], "unknown clipping method 'best'"),
        (["study", "--distribution", "cauchy"], "unknown distribution 'cauchy'"),
        (["study", "--granularity", "vector0"], "1..4096"),
        (["study", "--granularity", "rows"], "unknown granularity 'rows'"),
        (["study", "--format", "fp16"], "unknown number format 'fp16'"),
        (["study", "--format", "e4m3", "--clip", "octav"], "--clip octav needs an integer format"),
        (["study", "--scale-bits", "4"], "--scale-bits needs --granularity vectorN"),
        (["study", "--percentile", "0"], "--percentile must be in (0, 100]"),
        (["study", "--samples", "0"], "--samples must be in"),
        (["study", "--seed"], "--seed needs a value"),
        (["study", "--frobnicate", "1"], "unknown option --frobnicate"),
        (["quantize", "--out", "/tmp/x"], "--model PATH is required"),
        (["quantize", "--model", "m.bin"], "--out DIR is required"),
        (["quantize", "--model", "m", "--out", "d", "--clip", "percentile"], "--clip must be octav, max or mse"),
        (["quantize", "--model", "m", "--out", "d", "--vector-size", "0"], "--vector-size must be in 1..4096"),
        (["report"], "--model PATH is required"),
        (["report", "--model", "m", "--samples", "10"], "--samples must be in"),
    ]

    def test_exit_2_with_message(self):
        for args, message in self.CASES:
            with self.subTest(args=args):
                p = quant(*args)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(message, p.stderr)
                self.assertIn("qrag-quant --help", p.stderr)

    def test_help_exits_0(self):
        p = quant("--help")
        self.assertEqual(p.returncode, 0)
        self.assertIn("qrag-quant study", p.stdout.replace("qrag-quant COMMAND", "qrag-quant study"))


class Study(unittest.TestCase):
    def test_json_fields_and_octav_clip(self):
        p = quant("study", "--distribution", "gaussian", "--bits", "4", "--clip", "octav", "--granularity", "tensor",
                  "--samples", "65536", "--seed", "3", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        r = json.loads(p.stdout)
        for key in ("distribution", "format", "bits", "clip", "granularity", "samples", "seed", "clip_sigma",
                    "sqnr_db", "worst_rel_error", "mean_rel_error"):
            self.assertIn(key, r)
        self.assertEqual((r["format"], r["clip"], r["granularity"]), ("int4", "octav", "tensor"))
        self.assertGreater(r["clip_sigma"], 2.4)  # OCTAV 4-bit Gaussian: ~2.6 sigma
        self.assertLess(r["clip_sigma"], 2.8)
        self.assertGreater(r["sqnr_db"], 18)

    def test_same_seed_same_result_text_output(self):
        args = ["study", "--distribution", "student-t", "--format", "log4.3", "--granularity", "vector32"]
        a, b = quant(*args), quant(*args)
        self.assertEqual(a.returncode, 0, a.stderr)
        self.assertEqual(a.stdout, b.stdout)
        self.assertIn("SQNR", a.stdout)


class QuantizedCheckpoint(unittest.TestCase):
    def setUp(self):
        require_shared(self)

    def test_missing_model_is_error_1_naming_it(self):
        with tempfile.TemporaryDirectory() as d:
            p = quant("quantize", "--model", os.path.join(d, "nope.bin"), "--out", os.path.join(d, "q"))
            self.assertEqual(p.returncode, 1)
            self.assertIn("nope.bin", p.stderr)

    def test_served_checkpoint_equals_load_time_w4(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "stories260K-w4")
            p = quant("quantize", "--model", MODEL, "--out", out)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertTrue(os.path.exists(os.path.join(out, "tokenizer.model")))
            size = os.path.getsize(os.path.join(out, "model.safetensors"))
            gen = ["--temperature", "0", "--max-tokens", "60", "--prompt", "Lily and Ben"]
            from_checkpoint = run("--model", out, "--quant", "w4", *gen)
            from_fp32 = run("--model", MODEL, "--quant", "w4", *gen)
            self.assertEqual(from_checkpoint, from_fp32)
            self.assertGreater(len(from_checkpoint.strip()), 20)
            # The other precisions serve the dequantized weights of the same file.
            self.assertTrue(run("--model", out, "--quant", "fp32", *gen).strip())
            # Linear weights at 6 bits (4-bit codes + an fp32 scale and minimum per 32) instead of 32 (embeddings,
            # norms and the classifier stay fp32).
            self.assertLess(size, os.path.getsize(MODEL))
            if SERVER:
                self.assertEqual(serve_and_generate(out, gen), from_checkpoint)


    def test_symmetric_checkpoint_equals_load_time_symmetric_w4(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "stories260K-w4-symmetric")
            p = quant("quantize", "--model", MODEL, "--out", out, "--grid", "symmetric")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("symmetric int4", p.stdout)
            gen = ["--temperature", "0", "--max-tokens", "60", "--prompt", "Lily and Ben"]
            sym = ["--quant", "w4", "--w4-grid", "symmetric"]
            from_checkpoint = run("--model", out, *sym, *gen)
            self.assertEqual(from_checkpoint, run("--model", MODEL, *sym, *gen))
            self.assertTrue(from_checkpoint.strip())
            bad = subprocess.run([RUN, "--model", MODEL, "--quant", "w4", "--w4-grid", "skewed", *gen],
                                 capture_output=True, text=True)
            self.assertEqual(bad.returncode, 1)
            self.assertIn("unknown w4 grid 'skewed'", bad.stderr)


def serve_and_generate(model_dir, gen):
    """Starts the real qrag-server on the checkpoint with --quant w4, generates with the real qrag client."""
    proc = subprocess.Popen([SERVER, "--model", model_dir, "--quant", "w4", "--listen", "127.0.0.1:0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    address, ready = [], threading.Event()

    def read():
        for line in proc.stderr:
            if "listening on " in line and not address:
                address.append(line.split("listening on ", 1)[1].strip())
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(120):
            raise AssertionError("qrag-server did not start listening")
        subprocess.run([CLI, "health", "--server", address[0], "--wait", "60"], check=True, capture_output=True,
                       timeout=120)
        p = subprocess.run([CLI, "generate", "--server", address[0], *gen], capture_output=True, timeout=120)
        if p.returncode != 0:
            raise AssertionError(f"qrag generate failed: {p.stderr.decode()}")
        return p.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=60)


class Report(unittest.TestCase):
    def setUp(self):
        require_shared(self)
        probe = subprocess.run(["/usr/bin/python3", "-c", "import matplotlib"], capture_output=True)
        if probe.returncode != 0:
            msg = "python3-matplotlib missing (deploy/install-deps.sh installs it)"
            if os.environ.get("QRAG_REQUIRE_SHARED") == "1":
                self.fail(msg)
            self.skipTest(msg)

    def test_report_writes_markdown_csv_and_pngs(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "report.md")
            p = quant("report", "--model", MODEL, "--out", out, "--samples", "4096")
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(out) as f:
                text = f.read()
            for heading in ("## 1.", "## 2.", "## 3.", "## 4."):
                self.assertIn(heading, text)
            # No --scifact-dir: every encoder row says its SciFact figure was not measured.
            self.assertEqual(text.count("| not measured |"), 7)
            self.assertIn(f"qrag-quant report --model {MODEL} --out {out} --samples 4096", text)
            for png in ("item1_relative_error.png", "item2_sqnr_vs_bits.png", "item3_vector_size.png",
                        "item4_end_model.png"):
                with open(os.path.join(d, "report", png), "rb") as f:
                    self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_scifact_dir_fills_the_rows_it_has(self):
        with tempfile.TemporaryDirectory() as d:
            sci = os.path.join(d, "scifact")
            os.mkdir(sci)
            for name, ndcg, recall in (("fp32", 0.64508, 0.925), ("2of4", 0.5, 0.8)):
                with open(os.path.join(sci, name + ".json"), "w") as f:
                    json.dump({"encoder": name, "index": {"fp32": {"ndcg_at_10": ndcg, "recall_at_100": recall}}}, f)
            out = os.path.join(d, "r.md")
            p = quant("report", "--model", MODEL, "--out", out, "--samples", "4096", "--scifact-dir", sci)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(out) as f:
                text = f.read()
            self.assertRegex(text, r"\| fp32 \| [^|]+ \| 0\.6451 \| \+0\.0000 \| 0\.9250 \|")
            self.assertRegex(text, r"\| 2:4 \| [^|]+ \| 0\.5000 \| -0\.1451 \| 0\.8000 \|")
            self.assertEqual(text.count("| not measured |"), 5)
            with open(os.path.join(d, "r", "item4_scifact.csv")) as f:
                self.assertEqual(f.read().splitlines(), ["scheme,served,ndcg_at_10,recall_at_100",
                                                         "fp32,1,0.64508,0.925", "2:4,0,0.5,0.8"])
            self.assertIn("(r/item4_scifact.png)", text)
            with open(os.path.join(d, "r", "item4_scifact.png"), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_malformed_scifact_result_is_error_1_naming_it(self):
        with tempfile.TemporaryDirectory() as d:
            for body in ("{not json", json.dumps({"index": {"fp32": {"ndcg_at_10": "high"}}})):
                with open(os.path.join(d, "int8.json"), "w") as f:
                    f.write(body)
                p = quant("report", "--model", MODEL, "--out", os.path.join(d, "r.md"), "--samples", "4096",
                          "--scifact-dir", d)
                self.assertEqual(p.returncode, 1, body)
                self.assertIn("int8.json", p.stderr)
                self.assertIn("scifact_schemes.sh", p.stderr)

    def test_missing_encoder_is_error_1(self):
        with tempfile.TemporaryDirectory() as d:
            p = quant("report", "--model", MODEL, "--encoder", os.path.join(d, "none.safetensors"),
                      "--out", os.path.join(d, "r.md"))
            self.assertEqual(p.returncode, 1)
            self.assertIn("none.safetensors", p.stderr)


if __name__ == "__main__":
    QUANT, RUN = sys.argv[1], sys.argv[2]
    n = 3
    if len(sys.argv) >= 5 and not sys.argv[3].startswith("-"):
        SERVER, CLI = sys.argv[3], sys.argv[4]
        n = 5
    del sys.argv[1:n]
    unittest.main(verbosity=2)
