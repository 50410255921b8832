#!/usr/bin/env python3
"""Runs the README's command blocks as written ("Chat", "OpenAI-compatible API", "Serve it", "RAG", "Metrics") and its first command
(deploy/setup-and-run.sh): each ```sh block of those sections
becomes one bash script (set -euo pipefail), run from the repository root with the built programs, and its
output is checked for what the README promises (an answer, passages, the nominee's name).

usage: readme_test.py REPO_ROOT

Needs the SmolLM2 GGUF and MiniLM in ~/.cache/qrag (ctest fixtures `smollm2` and `minilm` fetch them), port
127.0.0.1:50051 and 127.0.0.1:8000 free, PyPI reachable (the OpenAI block installs the `openai` package into
~/.venvs/openai), and no ./rag-data in the repository (the RAG block creates it; the test removes it).
Missing models skip, or fail under QRAG_REQUIRE_SHARED=1.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import shared_data  # noqa: E402  (tests/shared_data.py)

REPO = None


def sections():
    """{header: [sh blocks]} of README.md."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    out = {}
    for part in re.split(r"^## ", text, flags=re.M)[1:]:
        header, _, body = part.partition("\n")
        out[header.strip()] = re.findall(r"^```sh\n(.*?)^```", body, flags=re.M | re.S)
    return out


def require_models(test):
    # The README's commands name the default cache (~/.cache/qrag), not $QRAG_SMOLLM2_GGUF / $QRAG_MINILM_DIR.
    cache = os.path.join(os.path.expanduser("~"), ".cache", "qrag")
    missing = [p for p in (os.path.join(cache, shared_data.SMOLLM2_RELATIVE),
                           os.path.join(cache, "all-MiniLM-L6-v2", "model.safetensors")) if not os.path.exists(p)]
    if missing:
        if os.environ.get("QRAG_REQUIRE_SHARED") == "1":
            test.fail(f"missing {missing} (tests/fetch_smollm2.sh, tests/fetch_minilm.sh); QRAG_REQUIRE_SHARED=1")
        test.skipTest(f"missing {missing}: run tests/fetch_smollm2.sh and tests/fetch_minilm.sh")


def run_block(test, script, timeout=900):
    """The block as one bash script in the repository root; kills whatever it left running."""
    proc = subprocess.Popen(["bash", "-c", "set -euo pipefail\n" + script], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    out, err = out.decode(errors="replace"), err.decode(errors="replace")
    test.assertEqual(proc.returncode, 0, f"README block failed:\n{script}\n--- stdout\n{out}\n--- stderr\n{err}")
    return out, err


class ReadmeCommands(unittest.TestCase):
    def setUp(self):
        require_models(self)
        self.sections = sections()

    def test_chat_section_runs_as_written(self):
        blocks = self.sections["Chat"]
        self.assertEqual(len(blocks), 1)
        out, err = run_block(self, blocks[0])
        self.assertIn("Paris", out)          # the one-shot answer
        self.assertIn("SERVING", out)
        self.assertIn("finish=stop", err)

    def test_openai_section_runs_as_written(self):
        blocks = self.sections["OpenAI-compatible API"]
        self.assertEqual(len(blocks), 1)
        out, err = run_block(self, blocks[0])
        self.assertIn('"object":"chat.completion"', out)  # curl's answer
        self.assertIn("Paris", out)
        self.assertRegex(out, r"(?i)red|blue|green|yellow")  # the SDK's streamed answer
        self.assertIn("http on 127.0.0.1:8000", err)

    def test_serve_section_runs_as_written(self):
        out, err = run_block(self, self.sections["Serve it"][0])
        self.assertIn("SERVING", out)
        self.assertIn("finish=length", err)  # 100 tokens generated

    def test_metrics_section_runs_as_written(self):
        out, err = run_block(self, self.sections["Metrics"][0])
        self.assertRegex(out, r'qrag_generated_tokens_total\{[^}]*\} [1-9]')

    def test_setup_and_run_script(self):
        """The README's first command (deploy/setup-and-run.sh): packages present, build up to date here, then
        the default model (the cached SmolLM2 GGUF) served and one streamed chat answer."""
        env = dict(os.environ, QRAG_DEPS_NO_UPDATE="1")
        env.pop("QRAG_MODEL", None)
        p = subprocess.run(["bash", "deploy/setup-and-run.sh"], cwd=REPO, capture_output=True, timeout=1800,
                           env=env, stdin=subprocess.DEVNULL)
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        self.assertEqual(p.returncode, 0, out[-3000:] + err[-3000:])
        self.assertIn("setup: qrag chat --server", out)
        self.assertIn("finish=", err)
        self.assertIn("qrag-server: stopped", err)
        self.assertIn("setup: done", out)

    def test_rag_section_runs_as_written(self):
        data = os.path.join(REPO, "rag-data")
        if os.path.exists(data):
            self.fail(f"{data} exists: the README's RAG block creates it; move it away to run this test")
        try:
            out, err = run_block(self, self.sections["RAG"][0])
        finally:
            shutil.rmtree(data, ignore_errors=True)
        self.assertIn("Ketanji Brown Jackson", out)  # retrieve's passages and the chat answer
        self.assertIn("qrag: passage [1]", err)
        self.assertIn("sotu", out)                   # collection list


if __name__ == "__main__":
    REPO = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0], *sys.argv[2:]], verbosity=2)
