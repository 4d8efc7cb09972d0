"""Serve the exported two-view model on a real Triton Inference Server (PyPI's nvidia-pytriton).

Runs inside the pytriton virtualenv (``infra/pytriton/setup.sh``). The wheel ships tritonserver with
its Python backend only (no ONNX Runtime backend), so the model is served through a bound function:
Triton receives the KServe v2 requests (HTTP with binary tensors, gRPC), batches them dynamically and
hands each batch to ONNX Runtime running the exported ``model.onnx``. Tensor names and shapes are the
export's (``cc``, ``mlo`` in; the logits and ``ood_distance`` out).

    python infra/pytriton/serve.py MODEL.onnx --name twoview --http-port 8000 --grpc-port 8001 --metrics-port 8002
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--name", default="twoview")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(args.model), sess_options=options, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    sidecar = args.model.with_suffix(".json")
    shapes = json.loads(sidecar.read_text(encoding="utf-8"))["outputs"] if sidecar.is_file() else {}

    @batch
    def infer(cc: np.ndarray, mlo: np.ndarray) -> dict[str, np.ndarray]:
        values = session.run(outputs, {"cc": cc.astype(np.float32), "mlo": mlo.astype(np.float32)})
        return {name: np.asarray(value, dtype=np.float32) for name, value in zip(outputs, values)}

    config = TritonConfig(
        http_address="127.0.0.1", grpc_address="127.0.0.1", http_port=args.http_port, grpc_port=args.grpc_port,
        metrics_port=args.metrics_port, log_verbose=0,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name=args.name,
            infer_func=infer,
            inputs=[Tensor(name="cc", dtype=np.float32, shape=(3, 336, 224)),
                    Tensor(name="mlo", dtype=np.float32, shape=(3, 336, 224))],
            outputs=[Tensor(name=name, dtype=np.float32, shape=tuple(shapes.get(name, [-1, 1])[1:]) or (-1,))
                     for name in outputs],
            config=ModelConfig(max_batch_size=args.max_batch_size,
                               batcher=DynamicBatcher(max_queue_delay_microseconds=2000)),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
