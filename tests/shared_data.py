"""Where the test suite finds ../shared (real models and datasets), for the Python tests.

$QRAG_SHARED_DIR, else the `shared` folder beside the repository. A test whose data is missing skips with a
message naming the path, or fails when QRAG_REQUIRE_SHARED=1 (as in CI).
"""
import os
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("QRAG_SHARED_DIR") or os.path.join(os.path.dirname(REPO), "shared")
STORIES = os.path.join(SHARED, "models", "stories260K")


def cached_model(env_var, relative):
    """A model fetched by tests/fetch_*.sh: $env_var when set, else ${QRAG_CACHE_DIR:-~/.cache/qrag}/relative
    (whether or not it exists)."""
    if os.environ.get(env_var):
        return os.environ[env_var]
    cache = os.environ.get("QRAG_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "qrag")
    return os.path.join(cache, relative)


SMOLLM2_RELATIVE = os.path.join("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def missing_message(path):
    """None when `path` exists, else the skip/fail message for it."""
    if os.path.exists(path):
        return None
    msg = f"shared data missing: {path} (set QRAG_SHARED_DIR)"
    if os.environ.get("QRAG_REQUIRE_SHARED") == "1":
        msg += "; QRAG_REQUIRE_SHARED=1 is set"
    return msg


def require(test, path):
    """Skips `test` (a unittest.TestCase) when `path` is missing, or fails it under QRAG_REQUIRE_SHARED=1."""
    msg = missing_message(path)
    if msg is None:
        return
    if os.environ.get("QRAG_REQUIRE_SHARED") == "1":
        test.fail(msg)
    test.skipTest(msg)


def require_in_setup_class(path):
    """The same for a setUpClass: raises SkipTest, or RuntimeError under QRAG_REQUIRE_SHARED=1."""
    msg = missing_message(path)
    if msg is None:
        return
    if os.environ.get("QRAG_REQUIRE_SHARED") == "1":
        raise RuntimeError(msg)
    raise unittest.SkipTest(msg)
