"""Context-managed launcher for MLServer serving an exported ONNX model over KServe v2 (HTTP + gRPC).

MLServer runs from its own virtualenv (``infra/mlserver/setup.sh``, cached in
``${MDD_CACHE_DIR:-<repo>/.cache}/mlserver-venv``) because it pins its own FastAPI. The model is
run by the small runtime in ``infra/mlserver/mdd_onnx_runtime.py`` (ONNX Runtime on the CPU).
The launcher picks free HTTP, gRPC and metrics ports on 127.0.0.1, waits (bounded) until the model
answers ready, yields the endpoints, and stops the server and deletes its folder on exit.

Command line: ``python -m infra.mlserver MODEL`` (a ``.onnx`` file or a Triton model folder such as
``var/export/triton/twoview``) prints the endpoints as JSON and serves until interrupted.
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

from infra.servers import (
    INFRA_DIR,
    ServerStartError,
    _Process,
    _run_fetch_script,
    _tcp_open,
    _temp_dir,
    free_ports,
)

MLSERVER_DIR = INFRA_DIR / "mlserver"
MLSERVER_START_TIMEOUT_S = 120.0
_GRPC_MAX_MESSAGE = 2**31 - 1


@dataclass(frozen=True)
class MLServerInfo:
    """Endpoints of a running MLServer (``host:port``, as tritonclient takes them)."""

    http_url: str
    grpc_url: str
    model_name: str
    model_version: str


def mlserver_venv() -> Path:
    """The MLServer virtualenv, created on first use by ``infra/mlserver/setup.sh``."""
    return _run_fetch_script(MLSERVER_DIR / "setup.sh")


def find_onnx_model(model: Path) -> tuple[Path, str]:
    """``(model.onnx, version)`` of a ``.onnx`` file or of a Triton model folder (highest version)."""
    model = Path(model)
    if model.is_file():
        return model.resolve(), "1"
    versions = sorted(
        (int(p.name) for p in model.glob("*") if p.is_dir() and p.name.isdigit() and (p / "model.onnx").is_file()),
    )
    if not versions:
        raise ServerStartError(f"{model}: no version folder with model.onnx (run `mdd export`)")
    return (model / str(versions[-1]) / "model.onnx").resolve(), str(versions[-1])


def _tensors(shapes: dict[str, list[int]]) -> list[dict[str, object]]:
    return [{"name": name, "datatype": "FP32", "shape": shape} for name, shape in shapes.items()]


def model_settings(onnx_path: Path, model_name: str, version: str) -> dict[str, object]:
    """MLServer ``model-settings.json`` for the exported model; tensors from its sidecar when present."""
    settings: dict[str, object] = {
        "name": model_name,
        "implementation": "mdd_onnx_runtime.OnnxModel",
        "platform": "onnxruntime_onnx",
        "versions": [version],
        "parameters": {"uri": str(onnx_path), "version": version},
    }
    sidecar = onnx_path.with_suffix(".json")
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        settings["inputs"] = _tensors(meta.get("inputs", {}))
        settings["outputs"] = _tensors(meta.get("outputs", {}))
    return settings


def _model_ready(http_port: int, model_name: str) -> bool:
    url = f"http://127.0.0.1:{http_port}/v2/models/{model_name}/ready"
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


@contextlib.contextmanager
def mlserver_server(
    model: Path, model_name: str | None = None, start_timeout: float = MLSERVER_START_TIMEOUT_S
) -> Iterator[MLServerInfo]:
    """Serve ``model`` (a ``.onnx`` file or a Triton model folder) with MLServer until the block ends.

    Raises :class:`infra.servers.ServerStartError` with the server's last log lines when it does
    not become ready within ``start_timeout`` seconds.
    """
    onnx_path, version = find_onnx_model(model)
    name = model_name or (Path(model).name if Path(model).is_dir() else onnx_path.stem)
    venv = mlserver_venv()
    http_port, grpc_port, metrics_port = free_ports(3)
    with _temp_dir("mdd-mlserver-") as folder:
        repo = folder / "models"
        (repo / name).mkdir(parents=True)
        (repo / "settings.json").write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "http_port": http_port,
                    "grpc_port": grpc_port,
                    "metrics_port": metrics_port,
                    "parallel_workers": 0,
                    "grpc_max_message_length": _GRPC_MAX_MESSAGE,
                    "debug": False,
                }
            ),
            encoding="utf-8",
        )
        (repo / name / "model-settings.json").write_text(
            json.dumps(model_settings(onnx_path, name, version)), encoding="utf-8"
        )
        env = {**os.environ, "PYTHONPATH": str(MLSERVER_DIR), "PYTHONUNBUFFERED": "1"}
        process = _Process("mlserver", [str(venv / "bin" / "mlserver"), "start", str(repo)], folder / "mlserver.log", folder, env)
        try:
            process.wait_ready(lambda: _model_ready(http_port, name) and _tcp_open(grpc_port), start_timeout)
            yield MLServerInfo(
                http_url=f"127.0.0.1:{http_port}",
                grpc_url=f"127.0.0.1:{grpc_port}",
                model_name=name,
                model_version=version,
            )
        finally:
            process.stop()


def main() -> None:
    """Serve one exported model and print its endpoints as JSON until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="model.onnx or a Triton model folder (var/export/triton/twoview)")
    parser.add_argument("--name", default=None, help="model name (default: the folder's name)")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with mlserver_server(args.model, args.name) as info:
        print(json.dumps(asdict(info)), flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    sys.exit(0)


if __name__ == "__main__":
    main()
