"""Images per second and per-study latency of each model backend, side by side (prints a table).

The two-view model is exported (``mdd export``) to a temporary folder, MLServer serves it over
KServe v2 (``infra/mlserver.py``), and the same random breasts go through each backend:
``torch`` (in process), ``onnx`` (ONNX Runtime in process), ``triton-http`` and ``triton-grpc``
(tritonclient against the Triton Inference Server of PyPI's nvidia-pytriton, ``infra/pytriton_server.py``;
HTTP with binary tensors), ``mlserver-http`` and ``mlserver-grpc`` (the same client against MLServer;
HTTP with JSON tensors, as MLServer needs). ``batch`` is the
number of breasts (CC + MLO, two images each) per model call, as ``MDD_INFER_BATCH_SIZE``. A
study is two breasts: at batch 1 it takes two calls; at batch 16 eight studies share one call,
and each of them waits for the whole call, so its latency is that call's time.

    .venv/bin/python benchmarks/infer.py --batch-sizes 1 16 --images 64
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from infra.mlserver import mlserver_server
from infra.pytriton_server import triton_server
from services.infer.backends import ModelBackend
from services.infer.backends.base import chunks
from services.infer.backends.onnx_backend import OnnxBackend
from services.infer.backends.triton_backend import TritonBackend
from mlkit.export.exporter import export_all
from services.infer.backends.metadata import read_metadata
from services.infer.predictor import BreastInputs, TorchPredictor

BACKENDS = ("torch", "onnx", "triton-http", "triton-grpc", "mlserver-http", "mlserver-grpc")


def random_breasts(count: int, seed: int = 0) -> list[BreastInputs]:
    """``count`` breasts with both views, random pixels in 0..1 (speed does not depend on content)."""
    rng = np.random.default_rng(seed)
    sides = ("R", "L")
    return [
        BreastInputs(sides[i % 2], cc=rng.random((336, 224, 3), dtype=np.float32), mlo=rng.random((336, 224, 3), dtype=np.float32))  # type: ignore[arg-type]
        for i in range(count)
    ]


def measure(backend: ModelBackend, batch: int, rounds: int, warmup: int) -> tuple[float, float, float]:
    """``(images/s, median study latency s, p90 study latency s)``.

    Each round predicts ``max(batch, 2)`` breasts (one study at batch 1, eight studies at batch
    16) in calls of ``batch`` breasts; a study's result is ready when its round ends.
    """
    breasts = random_breasts(max(batch, 2))

    def one_round() -> None:
        for chunk in chunks(breasts, batch):
            assert len(backend.predict(chunk)) == len(chunk)

    for _ in range(warmup):
        one_round()
    times: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        one_round()
        times.append(time.perf_counter() - start)
    images = 2 * len(breasts) * rounds
    return images / sum(times), statistics.median(times), float(np.percentile(times, 90))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="efficientnet_b0", choices=["efficientnet_b0", "small_cnn"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--images", type=int, default=64, help="images timed per backend and batch size")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--torch-device", default="cpu", help="cpu or cuda (the torch row only)")
    args = parser.parse_args()

    import onnxruntime
    import torch

    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        exported = export_all(Path(folder), backbone=args.backbone, max_batch_size=max(args.batch_sizes))
        metadata = read_metadata(exported.onnx)
        factories: dict[str, Callable[[int], ModelBackend]] = {
            "torch": lambda b: TorchPredictor(backbone=args.backbone, device=args.torch_device),
            "onnx": lambda b: OnnxBackend(exported.onnx, batch_size=b),
        }
        for kind, launcher, binary in (("triton", triton_server, True), ("mlserver", mlserver_server, False)):
            if not any(name.startswith(kind) for name in args.backends):
                continue
            server = stack.enter_context(launcher(exported.triton_repository / "twoview"))  # type: ignore[operator]
            for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
                factories[f"{kind}-{protocol}"] = lambda b, p=protocol, u=url, d=binary: TritonBackend(  # type: ignore[misc]
                    u, protocol=p, model_name="twoview", metadata=metadata, batch_size=b, timeout_s=600,
                    ready_timeout_s=60, binary_data=d,
                )

        print(
            f"Modelo / model: {metadata.model_name} ({args.backbone}), entradas 2 x 3x336x224 por mama / per breast; "
            f"CPU: {os.cpu_count()} núcleos / cores ({platform.machine()}), torch {torch.__version__} "
            f"({torch.get_num_threads()} hilos / threads, {args.torch_device}), onnxruntime {onnxruntime.__version__}; "
            f"carga / load average {os.getloadavg()[0]:.1f}"
        )
        print(f"{'backend':<14} {'lote/batch':>10} {'imágenes/s':>11} {'estudio/study p50':>18} {'p90':>9}")
        for name in args.backends:
            for batch in args.batch_sizes:
                backend = factories[name](batch)
                rounds = max(3, args.images // (2 * max(batch, 2)))
                images_per_s, p50, p90 = measure(backend, batch, rounds, args.warmup)
                print(f"{name:<14} {batch:>10} {images_per_s:>11.1f} {p50 * 1000:>15.0f} ms {p90 * 1000:>6.0f} ms", flush=True)


if __name__ == "__main__":
    main()
