"""An MLServer runtime that serves an exported ONNX model with ONNX Runtime (KServe v2, HTTP and gRPC).

Loaded by MLServer from ``model-settings.json`` (``"implementation": "mdd_onnx_runtime.OnnxModel"``,
``parameters.uri`` pointing at ``model.onnx``); this file runs inside MLServer's own virtualenv.
"""

from __future__ import annotations

import asyncio

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    """Runs one ONNX graph; every input and output is a numpy tensor."""

    async def load(self) -> bool:
        """Open the ONNX Runtime session on the CPU."""
        uri = await get_model_uri(self._settings, wellknown_filenames=["model.onnx"])
        self._session = ort.InferenceSession(uri, providers=["CPUExecutionProvider"])
        self._inputs = {i.name: i for i in self._session.get_inputs()}
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Decode the request tensors, run the graph off the event loop, encode the outputs."""
        feeds: dict[str, np.ndarray] = {}
        for request_input in payload.inputs:
            if request_input.name not in self._inputs:
                raise InferenceError(f"Unknown input {request_input.name!r}; expected {sorted(self._inputs)}")
            feeds[request_input.name] = np.ascontiguousarray(NumpyCodec.decode_input(request_input), dtype=np.float32)
        missing = sorted(set(self._inputs) - set(feeds))
        if missing:
            raise InferenceError(f"Missing inputs {missing}")
        wanted = [o.name for o in payload.outputs] if payload.outputs else self._outputs
        results = await asyncio.get_running_loop().run_in_executor(None, self._session.run, wanted, feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(name, np.asarray(value)) for name, value in zip(wanted, results)],
        )
