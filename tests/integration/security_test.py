#!/usr/bin/env python3
"""TLS, mutual TLS and bearer-token authentication of the real qrag-server, called over loopback by a Python
grpcio client (stubs generated at test time, as serving_test.py) and once by the real `qrag` CLI.

usage: security_test.py --server-bin PATH --run-bin PATH --make-model-bin PATH --cli-bin PATH
                        --proto-dir DIR --grpc-proto-dir DIR [unittest args]

A CA, a server certificate (SAN IP:127.0.0.1, DNS:localhost), a client certificate and a self-signed "rogue"
client certificate are generated at test time with the `openssl` command. Needs the stories260K model
(shared data; see serving_test.py).
"""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serving_test as st  # noqa: E402  (shared helpers: stub generation, Server, shared-data checks)

TOKENS = ["s3cret-token-one", "second-token-2"]
CERTS = None  # dict name -> path


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(out_dir):
    """EC P-256 keys: fast to generate. Returns paths of ca.pem, server.{pem,key}, client.{pem,key},
    rogue.{pem,key} (self-signed, not from the CA)."""
    d = os.path.join(out_dir, "pki")
    os.makedirs(d)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=qrag test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write("basicConstraints=CA:FALSE\n" + ext)
        openssl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=qrag {name}",
                cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=d)
    openssl("req", "-x509", *ec, "-keyout", "rogue.key", "-out", "rogue.pem", "-days", "2", "-subj", "/CN=rogue",
            cwd=d)
    return {n: os.path.join(d, n) for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key",
                                             "rogue.pem", "rogue.key")}


def read(path):
    with open(path, "rb") as f:
        return f.read()


def setUpModule():
    global CERTS
    st.setUpModule()
    if st._skip_reason is None:
        CERTS = make_certificates(st.TMP)
        with open(os.path.join(st.TMP, "tokens.txt"), "w") as f:
            f.write(f"# qrag test tokens\n\n{TOKENS[0]}\n  {TOKENS[1]}  \n")


def tearDownModule():
    st.tearDownModule()


def tls_channel(address, client_cert=None):
    creds = st.grpc.ssl_channel_credentials(
        root_certificates=read(CERTS["ca.pem"]),
        private_key=read(CERTS[f"{client_cert}.key"]) if client_cert else None,
        certificate_chain=read(CERTS[f"{client_cert}.pem"]) if client_cert else None)
    return st.grpc.secure_channel(address, creds)


def bearer(token):
    return (("authorization", f"Bearer {token}"),)


SHORT = dict(prompt="Once upon a time", max_tokens=8, temperature=0)


class SecureServer(unittest.TestCase):
    """Shared assertions: a call's error code and message, and that the server still serves."""

    def assert_rpc_error(self, call, code, *fragments):
        with self.assertRaises(st.grpc.RpcError) as ctx:
            result = call()
            if not isinstance(result, st.pb.GenerateResponse):
                list(result)
        self.assertEqual(ctx.exception.code(), code, ctx.exception.details())
        for f in fragments:
            self.assertIn(f, ctx.exception.details() or "")
        return ctx.exception

    def wait_serving(self, health):
        st.wait_for(lambda: health.Check(st.health_pb.HealthCheckRequest(), timeout=10).status ==
                    st.health_pb.HealthCheckResponse.SERVING, 120, "SERVING")


class TlsAndTokens(SecureServer):
    """--tls-cert/--tls-key and --auth-tokens on one server."""

    server = None

    @classmethod
    def setUpClass(cls):
        if st._skip_reason is None:
            cls.server = st.Server("--model", st.MODEL, "--tls-cert", CERTS["server.pem"], "--tls-key",
                                   CERTS["server.key"], "--auth-tokens", os.path.join(st.TMP, "tokens.txt"))
            cls.channel = tls_channel(cls.server.address)
            cls.inference = st.pb_grpc.InferenceStub(cls.channel)
            cls.admin = st.admin_grpc.AdminStub(cls.channel)
            cls.health = st.health_grpc.HealthStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        if cls.server is not None:
            cls.server.kill()

    def setUp(self):
        st.require_shared(self)
        self.wait_serving(self.health)

    def assert_still_serves(self):
        r = self.inference.Generate(st.request(**SHORT), timeout=60, metadata=bearer(TOKENS[0]))
        self.assertEqual(r.usage.completion_tokens, 8)

    def test_tls_client_with_token_works(self):
        r = self.inference.Generate(st.request(**SHORT), timeout=60, metadata=bearer(TOKENS[0]))
        chunks = list(self.inference.GenerateStream(st.request(**SHORT), timeout=60, metadata=bearer(TOKENS[1])))
        self.assertEqual("".join(c.text for c in chunks), r.text)
        models = self.inference.ListModels(st.pb.ListModelsRequest(), timeout=10, metadata=bearer(TOKENS[1]))
        self.assertEqual([m.name for m in models.models], ["stories260K"])
        stats = self.admin.GetServerStats(st.admin_pb.GetServerStatsRequest(), timeout=10,
                                          metadata=bearer(TOKENS[0]))
        self.assertEqual(stats.state, "serving")

    def test_plaintext_client_fails(self):
        plain = st.grpc.insecure_channel(self.server.address)
        stub = st.pb_grpc.InferenceStub(plain)
        self.assert_rpc_error(lambda: stub.Generate(st.request(**SHORT), timeout=5, metadata=bearer(TOKENS[0])),
                              st.grpc.StatusCode.UNAVAILABLE)
        plain.close()
        self.assert_still_serves()

    def test_health_and_reflection_need_no_token(self):
        self.assertEqual(self.health.Check(st.health_pb.HealthCheckRequest(service="qrag.v1.Inference"),
                                           timeout=10).status, st.health_pb.HealthCheckResponse.SERVING)
        refl = st.refl_grpc.ServerReflectionStub(self.channel)
        answers = list(refl.ServerReflectionInfo(iter([st.refl_pb.ServerReflectionRequest(list_services="")]),
                                                 timeout=10))
        names = [s.name for s in answers[0].list_services_response.service]
        self.assertIn("qrag.v1.Inference", names)

    def test_missing_malformed_and_wrong_tokens_are_unauthenticated(self):
        U = st.grpc.StatusCode.UNAUTHENTICATED
        chat_request = st.pb.ChatRequest(messages=[st.pb.ChatMessage(role="user", content="hi")])
        cases = [
            ((), "missing 'authorization: Bearer <token>'"),
            ((("authorization", "Basic dXNlcjpwYXNz"),), "must be 'Bearer <token>'"),
            ((("authorization", "Bearer "),), "must be 'Bearer <token>'"),
            (bearer("wrong-token"), "not valid"),
            (bearer(TOKENS[0] + "x"), "not valid"),
            (bearer(TOKENS[0][:-1]), "not valid"),
            ((("authorization", f"Bearer {TOKENS[0]}"), ("authorization", f"Bearer {TOKENS[1]}")), "more than one"),
        ]
        for metadata, fragment in cases:
            with self.subTest(metadata=metadata):
                e = self.assert_rpc_error(
                    lambda: self.inference.Generate(st.request(**SHORT), timeout=10, metadata=metadata), U, fragment)
                self.assertNotIn(TOKENS[0], e.details())
                self.assert_rpc_error(
                    lambda: self.inference.GenerateStream(st.request(**SHORT), timeout=10, metadata=metadata), U,
                    fragment)
        for call in (lambda: self.inference.ListModels(st.pb.ListModelsRequest(), timeout=10),
                     lambda: self.inference.GetModelInfo(st.pb.GetModelInfoRequest(), timeout=10),
                     lambda: self.admin.GetServerStats(st.admin_pb.GetServerStatsRequest(), timeout=10),
                     lambda: self.inference.Chat(chat_request, timeout=10),
                     lambda: list(self.inference.ChatStream(chat_request, timeout=10)),
                     lambda: self.inference.ApplyChatTemplate(chat_request, timeout=10)):
            self.assert_rpc_error(call, U, "missing")
        self.assert_still_serves()

    def test_cpp_cli_over_tls_with_token(self):
        addr = self.server.address
        common = ["--server", addr, "--tls-ca", CERTS["ca.pem"]]
        expected = self.inference.Generate(st.request(**SHORT), timeout=60, metadata=bearer(TOKENS[0])).text
        p = subprocess.run([st.ARGS.cli_bin, "generate", *common, "--token", TOKENS[0], "--prompt", SHORT["prompt"],
                            "--max-tokens", "8", "--temperature", "0", "--stream"], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.decode(), expected + "\n")
        # The token from $QRAG_TOKEN; the certificate checked against DNS:localhost.
        env = dict(os.environ, QRAG_TOKEN=TOKENS[1])
        p = subprocess.run([st.ARGS.cli_bin, "models", *common, "--tls-server-name", "localhost"],
                           capture_output=True, timeout=60, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("stories260K (default)", p.stdout.decode())
        env.pop("QRAG_TOKEN")
        p = subprocess.run([st.ARGS.cli_bin, "models", *common], capture_output=True, timeout=60, env=env)
        self.assertEqual(p.returncode, 1)
        self.assertIn("UNAUTHENTICATED", p.stderr.decode())
        p = subprocess.run([st.ARGS.cli_bin, "health", *common], capture_output=True, timeout=60, env=env)
        self.assertEqual((p.returncode, p.stdout.decode()), (0, "SERVING\n"), p.stderr)
        p = subprocess.run([st.ARGS.cli_bin, "health", "--server", addr, "--timeout", "5"], capture_output=True,
                           timeout=60, env=env)  # plaintext against TLS
        self.assertEqual(p.returncode, 1)
        p = subprocess.run([st.ARGS.cli_bin, "health", "--server", addr, "--tls-ca", CERTS["server.key"]],
                           capture_output=True, timeout=60, env=env)  # a key is not a CA certificate
        self.assertEqual(p.returncode, 1, p.stderr)  # PEM, but no CA certificate in it: no handshake
        p = subprocess.run([st.ARGS.cli_bin, "health", "--server", addr, "--tls-ca", "/nonexistent/ca.pem"],
                           capture_output=True, timeout=60, env=env)
        self.assertEqual(p.returncode, 2)
        self.assertIn("/nonexistent/ca.pem", p.stderr.decode())
        self.assert_still_serves()


class MutualTls(SecureServer):
    """--tls-client-ca: client certificates required and verified."""

    server = None

    @classmethod
    def setUpClass(cls):
        if st._skip_reason is None:
            cls.server = st.Server("--model", st.MODEL, "--tls-cert", CERTS["server.pem"], "--tls-key",
                                   CERTS["server.key"], "--tls-client-ca", CERTS["ca.pem"])
            cls.channel = tls_channel(cls.server.address, client_cert="client")
            cls.inference = st.pb_grpc.InferenceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        if cls.server is not None:
            cls.server.kill()

    def setUp(self):
        st.require_shared(self)
        self.wait_serving(st.health_grpc.HealthStub(self.channel))

    def assert_still_serves(self):
        self.assertEqual(self.inference.Generate(st.request(**SHORT), timeout=60).usage.completion_tokens, 8)

    def test_client_with_certificate_works(self):
        self.assert_still_serves()
        p = subprocess.run([st.ARGS.cli_bin, "generate", "--server", self.server.address, "--tls-ca", CERTS["ca.pem"],
                            "--tls-cert", CERTS["client.pem"], "--tls-key", CERTS["client.key"], "--prompt",
                            SHORT["prompt"], "--max-tokens", "8", "--temperature", "0"],
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_client_without_or_with_untrusted_certificate_is_rejected(self):
        for cert in (None, "rogue"):
            with self.subTest(cert=cert):
                channel = tls_channel(self.server.address, client_cert=cert)
                stub = st.pb_grpc.InferenceStub(channel)
                self.assert_rpc_error(lambda: stub.Generate(st.request(**SHORT), timeout=5),
                                      st.grpc.StatusCode.UNAVAILABLE)
                health = st.health_grpc.HealthStub(channel)
                self.assert_rpc_error(lambda: health.Check(st.health_pb.HealthCheckRequest(), timeout=5),
                                      st.grpc.StatusCode.UNAVAILABLE)
                channel.close()
                self.assert_still_serves()
        p = subprocess.run([st.ARGS.cli_bin, "health", "--server", self.server.address, "--tls-ca", CERTS["ca.pem"],
                            "--timeout", "5"], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assert_still_serves()


class StartupRefusal(unittest.TestCase):
    """Bad security flags or files: the server refuses to start (2 for usage, 1 for files) and says why."""

    def setUp(self):
        st.require_shared(self)

    def start(self, *args):
        return subprocess.run([st.ARGS.server_bin, "--model", st.MODEL, "--listen", "127.0.0.1:0", *args],
                              capture_output=True, timeout=60)

    def test_refusals(self):
        def write(name, text):
            path = os.path.join(st.TMP, name)
            with open(path, "w") as f:
                f.write(text)
            return path
        empty_tokens = write("empty-tokens.txt", "# nothing\n\n")
        spaced_tokens = write("spaced-tokens.txt", "two words\n")
        not_pem = write("not-pem.txt", "hello\n")
        unreadable = write("unreadable.pem", "x")
        os.chmod(unreadable, 0)
        cert, key, ca = CERTS["server.pem"], CERTS["server.key"], CERTS["ca.pem"]
        cases = [
            (["--tls-cert", cert], 2, "--tls-cert and --tls-key go together"),
            (["--tls-key", key], 2, "--tls-cert and --tls-key go together"),
            (["--tls-client-ca", ca], 2, "--tls-client-ca"),
            (["--tls-cert", "/nonexistent/c.pem", "--tls-key", key], 1, "/nonexistent/c.pem"),
            (["--tls-cert", cert, "--tls-key", not_pem], 1, "not a PEM file"),
            (["--tls-cert", key, "--tls-key", cert], 1, "--tls-cert"),
            (["--tls-cert", cert, "--tls-key", CERTS["client.key"]], 1, "TLS certificate/key rejected"),
            (["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", "/nonexistent/ca.pem"], 1, "--tls-client-ca"),
            (["--auth-tokens", "/nonexistent/tokens"], 1, "/nonexistent/tokens"),
            (["--auth-tokens", empty_tokens], 1, "holds no token"),
            (["--auth-tokens", spaced_tokens], 1, "line 1"),
            (["--auth-tokens", st.TMP], 1, "directory"),
        ]
        if os.geteuid() != 0:  # root reads any file
            cases.append((["--auth-tokens", unreadable], 1, "permission denied"))
        for args, code, fragment in cases:
            with self.subTest(args=args):
                p = self.start(*args)
                self.assertEqual(p.returncode, code, p.stderr)
                self.assertIn(fragment, p.stderr.decode())


def main():
    import argparse
    parser = argparse.ArgumentParser()
    for flag in ("--server-bin", "--run-bin", "--make-model-bin", "--cli-bin", "--proto-dir", "--grpc-proto-dir"):
        parser.add_argument(flag, required=True)
    st.ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
