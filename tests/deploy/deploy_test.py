#!/usr/bin/env python3
"""Checks the deployment files (Dockerfile, deploy/docker-compose.yml, deploy/k8s/, deploy/prometheus.yml,
the Grafana provisioning and dashboard) against the real programs, without a container engine:

- the Dockerfile builds with the scripts CI runs (deploy/install-deps.sh, deploy/build.sh) and no copy of
  their contents; its ports, health check, user, volumes and entrypoint match the server;
- deploy/runtime-packages.sh maps the real binaries' shared libraries to Debian packages;
- every config file the deployment hands qrag-server (deploy/qrag.yaml, the k8s ConfigMap) is accepted by the
  real qrag-server (`--check-config`), and a bad one is rejected with exit 2 and a message;
- the compose file and the k8s manifests parse, and reference files, images, ports, probes and metric names
  that exist;
- `promtool check config` accepts deploy/prometheus.yml;
- every metric the Grafana dashboard and the HPA query appears in a live scrape of the real qrag-server.

Usage: deploy_test.py --server-bin B --cli-bin B --run-bin B --fake-nvml-lib L [--promtool P]
Shared data ($QRAG_SHARED_DIR or ../shared): the live scrape serves stories260K; without it that part skips,
or fails when QRAG_REQUIRE_SHARED=1.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import shared_data  # noqa: E402  (tests/shared_data.py)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARGS = None
GRPC_PORT = 50051
METRICS_PORT = 9400
HTTP_PORT = 8000  # the OpenAI-compatible API (--http-listen)


def read(rel):
    with open(os.path.join(REPO, rel), encoding="utf-8") as f:
        return f.read()


def dockerfile_instructions():
    """(instruction, argument) pairs of the Dockerfile, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in read("Dockerfile").splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        current += " " + stripped.rstrip("\\").strip() if current else stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            word, _, rest = current.partition(" ")
            out.append((word.upper(), rest.strip()))
            current = ""
    return out


def k8s_documents():
    docs = {}
    for name in sorted(os.listdir(os.path.join(REPO, "deploy/k8s"))):
        if not name.endswith(".yaml") or name in ("kustomization.yaml", "prometheus-adapter-rule.yaml"):
            continue
        for doc in yaml.safe_load_all(read(f"deploy/k8s/{name}")):
            if doc:
                docs[doc["kind"]] = doc
    return docs


def check_config(config_text, env=None, extra=()):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(config_text)
        path = f.name
    try:
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run([ARGS.server_bin, "--config", path, "--check-config", *extra], env=e,
                              capture_output=True, text=True, timeout=30)
    finally:
        os.unlink(path)


class DockerfileTest(unittest.TestCase):
    def test_builds_with_the_ci_scripts_only(self):
        runs = [arg for (ins, arg) in dockerfile_instructions() if ins == "RUN"]
        joined = "\n".join(runs)
        self.assertIn("bash /src/deploy/install-deps.sh", joined)
        self.assertIn("bash deploy/build.sh", joined)
        # One dependency list and one build recipe: the Dockerfile copies neither.
        self.assertNotRegex(joined, r"\bcmake\s+-S\b", "the Dockerfile must build through deploy/build.sh")
        self.assertNotRegex(joined, r"libgrpc|libabsl|prometheus-cpp", "package lists belong in install-deps.sh")
        # The build stage runs build.sh with no extra CMake flags: the same invocation as CI.
        self.assertRegex(joined, r"bash deploy/build\.sh(\s*$|\s*\n)", "build.sh must run as CI runs it")

    def test_ci_runs_the_same_scripts(self):
        ci = read(".ci/run")
        self.assertIn("deploy/install-deps.sh", ci)
        self.assertIn("tests/run-tests.sh", ci)
        self.assertIn("deploy/build.sh", read("tests/run-tests.sh"))

    def test_runtime_stage(self):
        ins = dockerfile_instructions()
        froms = [arg for (i, arg) in ins if i == "FROM"]
        self.assertEqual(len(froms), 2, "multi-stage: build and runtime")
        self.assertTrue(froms[1].endswith("AS runtime"))
        runtime = ins[[i for i, (k, _) in enumerate(ins) if k == "FROM"][1]:]
        kinds = dict((k, a) for (k, a) in runtime)
        self.assertIn("USER", kinds)
        self.assertNotIn(kinds["USER"], ("root", "0"))
        exposed = {int(p) for p in kinds["EXPOSE"].split()}
        self.assertEqual(exposed, {GRPC_PORT, HTTP_PORT, METRICS_PORT})
        self.assertIn('"qrag", "health"', kinds["HEALTHCHECK"])
        self.assertIn(f"127.0.0.1:{GRPC_PORT}", kinds["HEALTHCHECK"])
        self.assertIn("/var/lib/qrag", kinds["VOLUME"])
        self.assertIn("/models", kinds["VOLUME"])
        entry = json.loads(kinds["ENTRYPOINT"])
        self.assertEqual(entry[:2], ["qrag-server", "--config"])
        # The runtime stage installs the computed package list, not a hand-kept one.
        self.assertIn("runtime-packages.txt", kinds["RUN"])
        # Every program the build stage installs exists in the build tree.
        for b in re.findall(r"(server/tools/[\w-]+|client/qrag)\b", read("Dockerfile")):
            self.assertTrue(b.endswith("qrag-quant") or os.path.exists(os.path.join(os.path.dirname(
                os.path.dirname(os.path.dirname(ARGS.server_bin))), b)), b)

    def test_default_environment_fills_the_shipped_config(self):
        env = {}
        for (ins, arg) in dockerfile_instructions():
            if ins == "ENV":
                for m in re.finditer(r"(\w+)=(\S+)", arg):
                    env[m.group(1)] = m.group(2)
        r = check_config(read("deploy/qrag.yaml"), env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"--listen=0.0.0.0:{GRPC_PORT}", r.stdout)
        self.assertIn(f"--http-listen=0.0.0.0:{HTTP_PORT}", r.stdout)
        self.assertIn("--model=/models/stories260K.bin", r.stdout)

    def test_runtime_packages_of_the_real_binaries(self):
        bins = [ARGS.server_bin, ARGS.cli_bin, ARGS.run_bin]
        r = subprocess.run(["bash", os.path.join(REPO, "deploy/runtime-packages.sh"), *bins],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        packages = r.stdout.split()
        self.assertEqual(packages, sorted(set(packages)))
        for expected in ("libc6", "libstdc++6"):
            self.assertIn(expected, packages)
        self.assertTrue(any(p.startswith("libgrpc++") for p in packages), packages)
        # Each named package is installed here, so apt can install it in the image.
        for p in packages:
            q = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
            self.assertIn("install ok installed", q.stdout, p)

    def test_runtime_packages_rejects_a_non_program(self):
        r = subprocess.run(["bash", os.path.join(REPO, "deploy/runtime-packages.sh"), "/nonexistent/prog"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("not an executable file", r.stderr)


class ServerConfigTest(unittest.TestCase):
    def test_bad_config_is_rejected_with_a_message(self):
        r = check_config("listen: 0.0.0.0:1\nno-such-flag: 3\n")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown option --no-such-flag", r.stderr)
        r = check_config("model: ${QRAG_TEST_SURELY_UNSET}\n")
        self.assertEqual(r.returncode, 2)
        self.assertIn("QRAG_TEST_SURELY_UNSET is not set", r.stderr)
        r = check_config("max-running: lots\nmodel: m\n")
        self.assertEqual(r.returncode, 2)
        self.assertIn("not a valid number", r.stderr)

    def test_command_line_overrides_the_file(self):
        r = check_config("model: a.bin\nquant: fp8\n", extra=("--quant", "int8"))
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertLess(lines.index("--quant=fp8"), lines.index("--quant"))

    def test_missing_config_file(self):
        r = subprocess.run([ARGS.server_bin, "--config", "/nonexistent/qrag.yaml"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("/nonexistent/qrag.yaml does not exist", r.stderr)


class ComposeTest(unittest.TestCase):
    def setUp(self):
        self.compose = yaml.safe_load(read("deploy/docker-compose.yml"))

    def test_services_and_profiles(self):
        services = self.compose["services"]
        self.assertEqual(set(services), {"qrag-gpu", "qrag-cpu", "prometheus", "grafana"})
        gpu = services["qrag-gpu"]
        devices = gpu["deploy"]["resources"]["reservations"]["devices"]
        self.assertEqual(devices[0]["driver"], "nvidia")
        self.assertIn("gpu", devices[0]["capabilities"])
        self.assertEqual(gpu["profiles"], ["gpu"])
        self.assertEqual(services["qrag-cpu"]["profiles"], ["cpu"])
        self.assertNotIn("deploy", services["qrag-cpu"])
        for name in ("qrag-gpu", "qrag-cpu"):
            s = services[name]
            self.assertEqual(s["build"]["dockerfile"], "Dockerfile")
            self.assertTrue(os.path.exists(os.path.join(REPO, "deploy", s["build"]["context"], "Dockerfile")))
            ports = {p.split(":")[-1] for p in s["ports"]}
            self.assertEqual(ports, {str(GRPC_PORT), str(HTTP_PORT), str(METRICS_PORT)})
            self.assertIn("qrag", s["networks"]["qrag"]["aliases"])
            # The command line the compose service appends to the image's entrypoint is accepted.
            env = {k: v.replace("${QRAG_MODEL_FILE:-stories260K.bin}", "stories260K.bin")
                   for k, v in s["environment"].items()}
            env["QRAG_QUANT"] = "fp32"
            r = check_config(read("deploy/qrag.yaml"), env, extra=tuple(s["command"]))
            self.assertEqual(r.returncode, 0, r.stderr)

    def test_mounted_files_exist(self):
        for name, s in self.compose["services"].items():
            for v in s.get("volumes", []):
                src = v.split(":")[0]
                if src.startswith("./"):
                    self.assertTrue(os.path.exists(os.path.join(REPO, "deploy", src)), f"{name}: {src}")

    def test_prometheus_scrapes_the_qrag_service(self):
        prom = yaml.safe_load(read("deploy/prometheus.yml"))
        targets = [t for job in prom["scrape_configs"] for sc in job.get("static_configs", [])
                   for t in sc.get("targets", [])]
        self.assertIn(f"qrag:{METRICS_PORT}", targets)


class KubernetesTest(unittest.TestCase):
    def setUp(self):
        self.docs = k8s_documents()

    def test_kinds(self):
        for kind in ("Deployment", "Service", "ConfigMap", "PersistentVolumeClaim", "HorizontalPodAutoscaler"):
            self.assertIn(kind, self.docs)
        listed = yaml.safe_load(read("deploy/k8s/kustomization.yaml"))["resources"]
        for f in listed:
            self.assertTrue(os.path.exists(os.path.join(REPO, "deploy/k8s", f)), f)

    def test_deployment_probes_ports_gpu_and_scrape_annotations(self):
        d = self.docs["Deployment"]
        pod = d["spec"]["template"]
        c = pod["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(ports, {"grpc": GRPC_PORT, "http": HTTP_PORT, "metrics": METRICS_PORT})
        self.assertEqual(c["resources"]["limits"]["nvidia.com/gpu"], 1)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            self.assertEqual(c[probe]["grpc"]["port"], GRPC_PORT, probe)
        self.assertEqual(c["readinessProbe"]["grpc"]["service"], "qrag.v1.Inference")
        ann = pod["metadata"]["annotations"]
        self.assertEqual(ann["prometheus.io/port"], str(METRICS_PORT))
        self.assertEqual(ann["prometheus.io/path"], "/metrics")
        self.assertEqual(d["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
        self.assertEqual(self.docs["Service"]["spec"]["selector"], pod["metadata"]["labels"])
        claim = [v for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v][0]
        self.assertEqual(claim["persistentVolumeClaim"]["claimName"], self.docs["PersistentVolumeClaim"]["metadata"]["name"])
        cm = [v for v in pod["spec"]["volumes"] if "configMap" in v][0]
        self.assertEqual(cm["configMap"]["name"], self.docs["ConfigMap"]["metadata"]["name"])
        # Drain time fits in the grace period.
        config = yaml.safe_load(self.docs["ConfigMap"]["data"]["qrag.yaml"])
        self.assertLess(float(config["drain-seconds"]), pod["spec"]["terminationGracePeriodSeconds"])
        self.assertEqual(config["listen"], f"0.0.0.0:{GRPC_PORT}")
        self.assertEqual(config["http-listen"], f"0.0.0.0:{HTTP_PORT}")
        service_ports = {p["name"]: p["port"] for p in self.docs["Service"]["spec"]["ports"]}
        self.assertEqual(service_ports, {"grpc": GRPC_PORT, "http": HTTP_PORT, "metrics": METRICS_PORT})

    def test_configmap_is_a_valid_server_config(self):
        d = self.docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in d.get("env", [])}
        r = check_config(self.docs["ConfigMap"]["data"]["qrag.yaml"], env)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_kustomize_renders_every_resource(self):
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            self.skipTest("kubectl not installed: the kustomize rendering check needs it (the YAML checks ran)")
        r = subprocess.run([kubectl, "kustomize", os.path.join(REPO, "deploy/k8s")], capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        rendered = [d for d in yaml.safe_load_all(r.stdout) if d]
        # Every manifest file is listed in kustomization.yaml, each once.
        self.assertEqual(sorted(d["kind"] for d in rendered), sorted(self.docs.keys()))
        for d in rendered:
            if d["kind"] != "Namespace":
                self.assertEqual(d["metadata"]["namespace"], "qrag", d["kind"])

    def test_hpa_targets_the_deployment(self):
        h = self.docs["HorizontalPodAutoscaler"]
        self.assertEqual(h["spec"]["scaleTargetRef"]["name"], self.docs["Deployment"]["metadata"]["name"])


def dashboard_metric_names():
    dash = json.loads(read("deploy/grafana/qrag-dashboard.json"))
    exprs = []

    def walk(node):
        if isinstance(node, dict):
            if "expr" in node and isinstance(node["expr"], str):
                exprs.append(node["expr"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(dash)
    names = set()
    for e in exprs:
        names.update(re.findall(r"\bqrag_[a-z0-9_]+", e))
    return dash, exprs, names


def missing_dashboard_metrics(scrape):
    """Dashboard metric names with no sample in `scrape`. Power and device energy come from one meter:
    qrag_gpu_* (NVML) or qrag_cpu_* (RAPL); the dashboard shows both, so a series of the other meter counts
    as present through its twin."""
    exported = families_of(scrape)

    def present(n):
        twin = (n.replace("qrag_cpu_", "qrag_gpu_") if n.startswith("qrag_cpu_")
                else n.replace("qrag_gpu_", "qrag_cpu_"))
        return n in exported or twin in exported
    return sorted(n for n in dashboard_metric_names()[2] if not present(n))


def families_of(scrape):
    """Metric names with samples in a Prometheus text exposition (histogram series names included)."""
    names = set()
    for line in scrape.splitlines():
        if line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


class LiveScrapeTest(unittest.TestCase):
    """Starts the real qrag-server with a small random model and scrapes /metrics."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qrag-deploy-")
        model = os.path.join(shared_data.STORIES, "stories260K.bin")
        shared_data.require_in_setup_class(model)
        # The energy series exist only with a meter; this machine has neither a GPU driver nor RAPL, so the
        # server's real NVML path (dlopen of libnvidia-ml.so.1) loads the test stand-in at a constant 250 W.
        nvml_dir = os.path.join(cls.tmp, "nvml")
        os.makedirs(nvml_dir)
        os.symlink(os.path.abspath(ARGS.fake_nvml_lib), os.path.join(nvml_dir, "libnvidia-ml.so.1"))
        env = dict(os.environ, LD_LIBRARY_PATH=nvml_dir, QRAG_FAKE_NVML_POWER_MW="250000")
        cls.proc = subprocess.Popen(
            [ARGS.server_bin, "--model", model, "--listen", "127.0.0.1:0",
             "--metrics-listen", "127.0.0.1:0", "--energy-meter", "nvml",
             "--energy-sample-ms", "20"],
            stderr=subprocess.PIPE, text=True, env=env)
        # The server prints the bound addresses ("listening on", then "metrics on") before loading the model.
        cls.address = cls.metrics_address = None
        log = []
        while cls.metrics_address is None:
            line = cls.proc.stderr.readline()
            if not line:
                break
            log.append(line)
            if m := re.search(r"listening on (\S+)", line):
                cls.address = m.group(1)
            if m := re.search(r"metrics on (\S+)", line):
                cls.metrics_address = m.group(1)
        if cls.address is None or cls.metrics_address is None:
            cls.proc.kill()
            raise RuntimeError("qrag-server did not start: " + "".join(log) + cls.proc.stderr.read())
        health = subprocess.run([ARGS.cli_bin, "health", "--server", cls.address, "--wait", "60"],
                                capture_output=True, text=True, timeout=90)
        if health.returncode != 0:
            cls.proc.kill()
            log = cls.proc.stderr.read()
            raise RuntimeError(f"qrag-server never became SERVING: {health.stdout}{health.stderr}\n{log}")
        # One request so that per-request series have samples.
        subprocess.run([ARGS.cli_bin, "generate", "--server", cls.address, "--prompt", "hello",
                        "--max-tokens", "4"], check=True, capture_output=True, timeout=60)
        # Derived gauges (ops per watt, tokens per joule) appear once the meter has sampled across an engine
        # iteration: scrape until every dashboard series is there, for at most 20 s.
        deadline = time.time() + 20
        while True:
            with urllib.request.urlopen(f"http://{cls.metrics_address}/metrics", timeout=10) as r:
                cls.scrape = r.read().decode()
            if not missing_dashboard_metrics(cls.scrape) or time.time() > deadline:
                break
            subprocess.run([ARGS.cli_bin, "generate", "--server", cls.address, "--prompt", "hello",
                            "--max-tokens", "8"], check=True, capture_output=True, timeout=60)
            time.sleep(0.5)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        try:
            cls.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            cls.proc.kill()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def families(self):
        return families_of(self.scrape)

    def test_every_dashboard_metric_is_exported(self):
        _, exprs, names = dashboard_metric_names()
        self.assertTrue(exprs, "the dashboard has no queries")
        missing = missing_dashboard_metrics(self.scrape)
        self.assertEqual(missing, [], "dashboard queries metrics the server does not export")

    def test_dashboard_uses_the_provisioned_datasource(self):
        dash, _, _ = dashboard_metric_names()
        ds = yaml.safe_load(read("deploy/grafana/provisioning/datasources/prometheus.yaml"))["datasources"][0]
        self.assertEqual(ds["type"], "prometheus")
        # Panels name the provisioned datasource by uid, or through a datasource variable of its type.
        variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
        uids = set(re.findall(r'"uid": "([^"]+)"', json.dumps([p.get("datasource") for p in dash["panels"]])))
        self.assertTrue(uids)
        for uid in uids:
            m = re.fullmatch(r"\$\{?(\w+)\}?", uid)
            if m:
                v = variables.get(m.group(1))
                self.assertIsNotNone(v, f"panel datasource {uid} names no dashboard variable")
                self.assertEqual((v["type"], v["query"]), ("datasource", "prometheus"))
            else:
                self.assertEqual(uid, ds["uid"])

    def test_hpa_metric_is_exported(self):
        h = k8s_documents()["HorizontalPodAutoscaler"]
        for m in h["spec"]["metrics"]:
            self.assertIn(m["pods"]["metric"]["name"], self.families())
        rule = yaml.safe_load(read("deploy/k8s/prometheus-adapter-rule.yaml"))
        for r in rule["rules"]:
            self.assertIn(re.match(r"(\w+)", r["seriesQuery"].strip("'")).group(1), self.families())


class PromtoolTest(unittest.TestCase):
    def test_prometheus_config(self):
        if not ARGS.promtool:
            self.fail("promtool not found: deploy/install-deps.sh installs the prometheus package")
        r = subprocess.run([ARGS.promtool, "check", "config", os.path.join(REPO, "deploy/prometheus.yml")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--server-bin", required=True)
    p.add_argument("--cli-bin", required=True)
    p.add_argument("--run-bin", required=True)
    p.add_argument("--fake-nvml-lib", required=True, help="tests/metrics/fake_nvml.cc built as a library")
    p.add_argument("--promtool", default=shutil.which("promtool"))
    ARGS, rest = p.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v", *rest])
