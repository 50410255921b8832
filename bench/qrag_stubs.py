"""qrag.v1's Python gRPC stubs for the bench scripts, generated at run time from proto/ (as the tests do)."""
import os
import shutil
import subprocess
import sys
import tempfile

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "proto")


def generate(proto_dir=PROTO_DIR):
    """(temporary folder to remove, grpc, inference_pb2, inference_pb2_grpc)."""
    tmp = tempfile.mkdtemp(prefix="qrag-stubs-")
    subprocess.run(["protoc", f"-I{proto_dir}", f"--python_out={tmp}", f"--grpc_python_out={tmp}",
                    f"--plugin=protoc-gen-grpc_python={shutil.which('grpc_python_plugin')}",
                    "qrag/v1/inference.proto", "qrag/v1/retrieval.proto"], check=True)
    sys.path.insert(0, tmp)
    import grpc
    from qrag.v1 import inference_pb2, inference_pb2_grpc
    return tmp, grpc, inference_pb2, inference_pb2_grpc
