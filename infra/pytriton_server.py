"""Context-managed launcher for a real Triton Inference Server (from PyPI's nvidia-pytriton) serving the
exported two-view model over KServe v2: HTTP (binary tensors) and gRPC.

Triton runs from its own virtualenv (``infra/pytriton/setup.sh``, cached in
``${MDD_CACHE_DIR:-<repo>/.cache}/pytriton-venv``; why it has its own interpreter is said there).
The wheel's server has only the Python backend, so ``infra/pytriton/serve.py`` binds a function that
runs the exported ONNX model with ONNX Runtime; Triton does the protocol, the dynamic batching and the
model readiness. On a machine without a GPU Triton logs that CUDA is missing and serves on the CPU.

Command line: ``python -m infra.pytriton_server MODEL`` (``.onnx`` or a Triton model folder) prints the
endpoints as JSON and serves until interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from infra.mlserver import find_onnx_model
from infra.servers import INFRA_DIR, _Process, _run_fetch_script, _tcp_open, _temp_dir, free_ports

PYTRITON_DIR = INFRA_DIR / "pytriton"
TRITON_START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class TritonInfo:
    """Endpoints of a running Triton server (``host:port``, as tritonclient takes them)."""

    http_url: str
    grpc_url: str
    model_name: str
    model_version: str


def pytriton_venv() -> Path:
    """The pytriton virtualenv, created on first use by ``infra/pytriton/setup.sh``."""
    return _run_fetch_script(PYTRITON_DIR / "setup.sh")


def _model_ready(http_port: int, model_name: str) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/models/{model_name}/ready", timeout=2) as response:
        return bool(response.status == 200)


@contextlib.contextmanager
def triton_server(
    model: Path, model_name: str = "twoview", start_timeout: float = TRITON_START_TIMEOUT_S, threads: int = 1
) -> Iterator[TritonInfo]:
    """Serve ``model`` (a ``.onnx`` file with its sidecar, or a Triton model folder) on Triton until the
    block ends; raises :class:`infra.servers.ServerStartError` with the log's tail when it does not
    become ready in time."""
    onnx_path, _ = find_onnx_model(model)
    venv = pytriton_venv()
    http_port, grpc_port, metrics_port = free_ports(3)
    with _temp_dir("mdd-triton-") as folder:
        argv = [
            str(venv / "bin" / "python"), str(PYTRITON_DIR / "serve.py"), str(onnx_path), "--name", model_name,
            "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
            "--threads", str(threads),
        ]
        # The server's workspace (model store, sockets) lives in the launcher's folder, removed afterwards.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HOME": str(folder), "PYTRITON_HOME": str(folder / "pytriton")}
        env.pop("PYTHONPATH", None)
        process = _Process("tritonserver", argv, folder / "triton.log", folder, env)
        try:
            process.wait_ready(lambda: _model_ready(http_port, model_name) and _tcp_open(grpc_port), start_timeout)
            yield TritonInfo(f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", model_name, "1")
        finally:
            process.stop()


def main() -> None:
    """Serve one exported model and print its endpoints as JSON until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="model.onnx or a Triton model folder (var/export/triton/twoview)")
    parser.add_argument("--name", default="twoview")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with triton_server(args.model, args.name) as info:
        print(json.dumps(asdict(info)), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
