#!/usr/bin/env python3
"""Runs the real qrag-run binary as a user would, against llama2.c's gold outputs for stories260K, and on GGUF
files (the real SmolLM2-135M-Instruct GGUF fetched by tests/fetch_smollm2.sh, and broken ones).

usage: qrag_run_test.py PATH/TO/qrag-run
Shared data: $QRAG_SHARED_DIR, else ../shared beside the repository. Missing data skips the tests, or
fails them when QRAG_REQUIRE_SHARED=1.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

BINARY = None
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import shared_data  # noqa: E402  (tests/shared_data.py)
SHARED = shared_data.SHARED
STORIES = os.path.join(SHARED, "models", "stories260K")
MODEL = os.path.join(STORIES, "stories260K.bin")
EXPECTED = os.path.join(STORIES, "expected")
PROMPT = "Lily and Ben went to the park. They saw a big red ball."


def require_shared(test):
    shared_data.require(test, MODEL)


def run(*args, check=True):
    proc = subprocess.run([BINARY, *args], capture_output=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"qrag-run {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()}")
    return proc


def gold(name):
    with open(os.path.join(EXPECTED, name), "rb") as f:
        return f.read()


class GoldOutputs(unittest.TestCase):
    def setUp(self):
        require_shared(self)

    def test_greedy_unprompted_200(self):
        out = run("--model", MODEL, "--temperature", "0", "--max-tokens", "200").stdout
        self.assertEqual(out, gold("greedy_t0.0_n200.txt") + b"\n")

    def test_greedy_unprompted_256_equals_run_c_stdout(self):
        out = run("--model", MODEL, "--temperature", "0", "--max-tokens", "256").stdout
        self.assertEqual(out, gold("greedy_t0.0_n256.stdout.txt"))

    def test_top_p_sampling_equals_run_c_stdout(self):
        out = run("--model", MODEL, "--temperature", "1.0", "--top-p", "0.9", "--seed", "133742",
                  "--max-tokens", "256").stdout
        self.assertEqual(out, gold("sample_t1.0_p0.9_s133742_n256.stdout.txt"))

    def test_prompted_greedy_prints_completion_only(self):
        # run.c -n 128 with the 22-token prompt generates 128 - 21 = 107 tokens and echoes the prompt.
        out = run("--model", MODEL, "--temperature", "0", "--prompt", PROMPT, "--max-tokens", "107").stdout
        expected = gold("prompted_greedy_n128.stdout.txt")
        self.assertTrue(expected.startswith(PROMPT.encode()))
        self.assertEqual(out, expected[len(PROMPT):])

    def test_reference_kernels_same_text(self):
        out = run("--model", MODEL, "--temperature", "0", "--max-tokens", "200", "--reference").stdout
        self.assertEqual(out, gold("greedy_t0.0_n200.txt") + b"\n")

    def test_sentencepiece_tokenizer_same_text(self):
        out = run("--model", MODEL, "--tokenizer", os.path.join(STORIES, "tok512.model"), "--temperature", "0",
                  "--prompt", PROMPT, "--max-tokens", "107").stdout
        self.assertEqual(out, gold("prompted_greedy_n128.stdout.txt")[len(PROMPT):])

    def test_quantized_modes_generate_and_report_speed(self):
        for quant in ("bf16", "fp8", "int8"):
            proc = run("--model", MODEL, "--quant", quant, "--temperature", "0", "--max-tokens", "64")
            text = proc.stdout.decode()
            self.assertGreater(len(text.split()), 10, quant)
            self.assertIn(f"{quant} weights", proc.stderr.decode())
            self.assertIn("tok/s", proc.stderr.decode())

    def test_stop_sequence_ends_before_it(self):
        full = run("--model", MODEL, "--temperature", "0", "--max-tokens", "200").stdout.decode()
        stop = "Lily's mom"
        self.assertIn(stop, full)
        out = run("--model", MODEL, "--temperature", "0", "--max-tokens", "200", "--stop", stop).stdout.decode()
        self.assertEqual(out, full[:full.index(stop)] + "\n")


class Errors(unittest.TestCase):
    def assert_fails(self, args, code, *fragments):
        proc = run(*args, check=False)
        err = proc.stderr.decode()
        self.assertEqual(proc.returncode, code, err)
        for fragment in fragments:
            self.assertIn(fragment, err)
        self.assertNotIn("Segmentation", err)

    def test_usage_errors_exit_2(self):
        self.assert_fails([], 2, "--model PATH is required")
        self.assert_fails(["--model", "x", "--bogus", "1"], 2, "unknown option --bogus")
        self.assert_fails(["--model", "x", "--max-tokens", "ten"], 2, "not a valid number")
        self.assert_fails(["--model"], 2, "needs a value")

    def test_help(self):
        proc = run("--help")
        self.assertIn(b"usage: qrag-run", proc.stdout)

    def test_missing_model(self):
        self.assert_fails(["--model", "/nonexistent/model.bin"], 1, "/nonexistent/model.bin", "no such file")

    def test_bad_model_files(self):
        require_shared(self)
        with tempfile.TemporaryDirectory() as d:
            with open(MODEL, "rb") as f:
                data = f.read()
            shutil.copy(os.path.join(STORIES, "tok512.bin"), os.path.join(d, "tok512.bin"))
            truncated = os.path.join(d, "truncated.bin")
            with open(truncated, "wb") as f:
                f.write(data[: len(data) // 3])
            self.assert_fails(["--model", truncated], 1, "truncated.bin", "implies")
            garbage = os.path.join(d, "garbage.bin")
            with open(garbage, "wb") as f:
                f.write(b"\xff" * 4096)
            self.assert_fails(["--model", garbage], 1, "garbage.bin")
            empty = os.path.join(d, "empty.bin")
            open(empty, "wb").close()
            self.assert_fails(["--model", empty], 1, "empty.bin")

    def test_bad_request_values(self):
        require_shared(self)
        self.assert_fails(["--model", MODEL, "--quant", "fp4"], 1, "unknown precision 'fp4'")
        self.assert_fails(["--model", MODEL, "--max-tokens", "0"], 1, "max_tokens must be > 0")
        self.assert_fails(["--model", MODEL, "--temperature", "-1"], 1, "temperature")
        self.assert_fails(["--model", MODEL, "--top-p", "1.5"], 1, "top_p")
        self.assert_fails(["--model", MODEL, "--max-tokens", "600"], 1, "max_tokens <=")

    def test_prompt_longer_than_context(self):
        require_shared(self)
        self.assert_fails(["--model", MODEL, "--prompt", "Lily saw a big ball. " * 200], 1,
                          "OUT_OF_RANGE", "shorten the prompt")

    def test_device_flag(self):
        self.assert_fails(["--model", "x", "--device", "tpu"], 2, "unknown device 'tpu'", "cuda, cpu or auto")
        self.assert_fails(["--model", "x", "--device", "cuda", "--reference"], 2, "--device cpu")
        require_shared(self)
        out = run("--model", MODEL, "--device", "cpu", "--temperature", "0", "--max-tokens", "200")
        self.assertEqual(out.stdout, gold("greedy_t0.0_n200.txt") + b"\n")
        self.assertIn(" on cpu ", out.stderr.decode())

    def test_device_cuda_without_gpu_fails_cleanly_or_matches_gold(self):
        # Without a usable GPU (or without the CUDA backend in this build), --device cuda is a clean error
        # before the model is read; with one, fp32 greedy text must equal llama2.c's gold.
        require_shared(self)
        proc = run("--model", MODEL, "--device", "cuda", "--temperature", "0", "--max-tokens", "200", check=False)
        err = proc.stderr.decode()
        if proc.returncode == 0:
            self.assertEqual(proc.stdout, gold("greedy_t0.0_n200.txt") + b"\n")
            self.assertIn(" on cuda:", err)
        else:
            self.assertEqual(proc.returncode, 1, err)
            self.assertIn("FAILED_PRECONDITION: --device cuda: no usable CUDA GPU", err)
            self.assertIn("use --device cpu", err)
            self.assertNotIn("Segmentation", err)
            self.assertEqual(proc.stdout, b"")

    def test_invalid_utf8_prompt(self):
        require_shared(self)
        with tempfile.NamedTemporaryFile(suffix=".txt") as f:
            f.write(b"abc\xff\xfe")
            f.flush()
            self.assert_fails(["--model", MODEL, "--prompt-file", f.name], 1, "INVALID_ARGUMENT", "UTF-8")


def smollm2_gguf():
    """The SmolLM2 GGUF of tests/fetch_smollm2.sh: $QRAG_SMOLLM2_GGUF, else the cache."""
    return shared_data.cached_model("QRAG_SMOLLM2_GGUF", shared_data.SMOLLM2_RELATIVE)


class GgufModels(unittest.TestCase):
    assert_fails = Errors.assert_fails

    def test_smollm2_greedy_capital_of_france(self):
        path = smollm2_gguf()
        shared_data.require(self, path)
        out = run("--model", path, "--prompt", "The capital of France is", "--temperature", "0",
                  "--max-tokens", "2").stdout
        self.assertEqual(out, b" Paris.\n")

    def test_broken_gguf_files_exit_1_naming_the_problem(self):
        gold = os.path.join(REPO, "tests", "data", "gguf", "gold.gguf")
        with open(gold, "rb") as f:
            data = f.read()
        with tempfile.TemporaryDirectory() as d:
            truncated = os.path.join(d, "truncated.gguf")
            with open(truncated, "wb") as f:
                f.write(data[: len(data) // 2])
            self.assert_fails(["--model", truncated], 1, "DATA_LOSS", "truncated.gguf")
            v9 = os.path.join(d, "v9.gguf")
            with open(v9, "wb") as f:
                f.write(data[:4] + bytes([9, 0, 0, 0]) + data[8:])
            self.assert_fails(["--model", v9], 1, "UNIMPLEMENTED", "GGUF version 9")
            # gold.gguf says llama but has no model keys.
            self.assert_fails(["--model", gold], 1, "INVALID_ARGUMENT", "'llama.embedding_length'")


if __name__ == "__main__":
    BINARY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
