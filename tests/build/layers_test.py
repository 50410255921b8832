#!/usr/bin/env python3
"""The layer check (cmake/check_layers.py) on the real tree and on planted violations.

  layers_test.py SOURCE_DIR BUILD_DIR/qrag_layers.json
"""
import importlib.util
import os
import sys
import unittest

SRC, LAYERS_JSON = sys.argv[1], sys.argv[2]
del sys.argv[1:3]

spec = importlib.util.spec_from_file_location("check_layers", os.path.join(SRC, "cmake", "check_layers.py"))
check_layers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_layers)


def load_layers():
    import json
    with open(LAYERS_JSON, encoding="utf-8") as f:
        return check_layers.Layers(json.load(f))


class LayersTest(unittest.TestCase):
    def setUp(self):
        self.layers = load_layers()

    def violations(self, files):
        return list(check_layers.violations(self.layers, files))

    def test_real_tree_has_no_upward_include(self):
        files = check_layers.owned_files(SRC, self.layers)
        self.assertGreater(len(files), 200, "the check must see the whole tree")
        self.assertEqual(self.violations(files), [])

    def test_every_source_file_belongs_to_a_layer(self):
        for top in ("server", "kernels", "client"):
            for dirpath, _, names in os.walk(os.path.join(SRC, top)):
                for n in names:
                    if n.endswith(check_layers.SOURCE_SUFFIXES):
                        rel = os.path.relpath(os.path.join(dirpath, n), SRC)
                        self.assertIsNotNone(self.layers.owner(rel), f"{rel} belongs to no layer")

    def test_owners(self):
        o = self.layers.owner
        self.assertEqual(o("server/quant/fp8.h"), "qrag_quant")
        self.assertEqual(o("server/common/config_file.h"), "qrag_config")
        self.assertEqual(o("server/common/status.h"), "qrag_common")
        self.assertEqual(o("server/backend/registry.cc"), "qrag_devices")
        self.assertEqual(o("server/backend/cpu/cpu_gemm.h"), "qrag_backend")
        self.assertEqual(o("server/backend/cuda/cuda_backend.h"), "qrag_cuda")
        self.assertEqual(o("server/metrics/energy_sampler.h"), "qrag_energy")
        self.assertEqual(o("server/metrics/serving_metrics.h"), "qrag_metrics")

    def test_upward_includes_are_caught(self):
        planted = {
            # the two breaks this check was written for (issue 14)
            "server/quant/quantized_checkpoint.h": '#include "server/model/host_tensor.h"\n',
            "server/rag/collections.h": '#include "server/metrics/serving_metrics.h"\n',
            "server/model/transformer.h": '#include "server/engine/engine.h"\n',
            "server/backend/cpu/cpu_gemm.cc": '  #  include "server/backend/registry.h"\n',
            "server/engine/engine.cc": '#include "qrag/v1/inference.pb.h"\n',
            "client/client.cc": '#include "server/engine/engine.h"\n',
            "server/api/validation.cc": '#include "server/metrics/serving_metrics.h"\n',
            "server/common/thread_pool.cc": '#include "server/nowhere/thing.h"\n',
        }
        found = {path for path, _, _ in self.violations(planted)}
        self.assertEqual(found, set(planted))

    def test_downward_and_sideways_includes_pass(self):
        ok = {
            "server/model/hf_loader.cc": '#include "server/model/quantized_checkpoint.h"\n#include "server/quant/w4.h"\n',
            "server/engine/engine.cc": '#include "server/backend/registry.h"\n#include "server/common/status.h"\n',
            "server/metrics/serving_metrics.cc": '#include "server/rag/rag_observer.h"\n#include "server/engine/engine.h"\n',
            "server/api/validation.cc": '#include "qrag/v1/inference.pb.h"\n#include <vector>\n#include "absl/strings/str_cat.h"\n',
            "client/rag_cli.cc": '#include "server/common/cli.h"\n',
            "server/tools/qrag_server.cc": '#include "server/api/grpc_server.h"\n#include "server/metrics/metrics_stack.h"\n',
        }
        self.assertEqual(self.violations(ok), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
