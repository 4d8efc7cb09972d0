"""The ``triton`` backend: the exported graph on a KServe v2 server (Triton, MLServer) via tritonclient.

Over HTTP or gRPC, with a per-request timeout, retries with exponential backoff on transport
errors, and a readiness wait at start-up that fails with a message saying what to check.
tritonclient's HTTP client runs on gevent and must stay on the thread that made it, so each
thread gets its own client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import numpy as np

from services.infer.backends.base import BackendUnavailable, ExportedModelBackend, Logits
from services.infer.backends.metadata import UNKNOWN_TRAINING, ExportMetadata
from services.infer.backends.signature import INPUT_DIMS, INPUT_NAMES, OUTPUT_NAMES, REQUIRED_OUTPUT_NAMES

log = logging.getLogger("mdd.infer.triton")

Protocol = Literal["http", "grpc"]
T = TypeVar("T")

# Transport-level failures worth another try; anything else (a bad request) fails at once.
_RETRYABLE_GRPC = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED", "StatusCode.ABORTED"}
_RETRYABLE_HTTP = {"429", "502", "503", "504"}
_GRPC_MAX_MESSAGE = 2**31 - 1


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed request may succeed if sent again (connection, timeout, overload)."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, OSError):
        return True
    if isinstance(exc, InferenceServerException):
        status = exc.status()
        return status is None or str(status) in _RETRYABLE_GRPC | _RETRYABLE_HTTP
    return False


class TritonBackend(ExportedModelBackend):
    """Runs the exported two-view model on a KServe v2 server.

    ``metadata`` is the sidecar of the exported model the server runs (``mdd export``); without
    it the backend reports an untrained model of unknown training, so every light stays YELLOW.
    ``binary_data`` uses Triton's binary tensor extension over HTTP (MLServer needs ``False``).
    """

    def __init__(
        self,
        url: str,
        protocol: Protocol = "grpc",
        model_name: str = "twoview",
        metadata: ExportMetadata | None = None,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        ready_timeout_s: float = 60.0,
        batch_size: int = 16,
        binary_data: bool = False,
        model_version: str = "",
    ) -> None:
        if protocol not in ("http", "grpc"):
            raise ValueError(f"Protocolo desconocido / unknown protocol: {protocol!r}")
        self.url = url
        self.protocol: Protocol = protocol
        self.server_model = model_name
        self.server_version = model_version
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.binary_data = binary_data
        self._local = threading.local()
        super().__init__(
            metadata
            or ExportMetadata(
                model_name=model_name,
                model_version=model_version or "?",
                trained=False,
                trained_on=UNKNOWN_TRAINING,
                backbone="?",
            ),
            batch_size,
        )
        self.wait_until_ready(ready_timeout_s)
        self._check_signature()

    # ----------------------------------------------------------------- clients

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "http":
                import tritonclient.http as httpclient

                client = httpclient.InferenceServerClient(
                    self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
                )
            else:
                import tritonclient.grpc as grpcclient

                client = grpcclient.InferenceServerClient(
                    self.url,
                    channel_args=[
                        ("grpc.max_send_message_length", _GRPC_MAX_MESSAGE),
                        ("grpc.max_receive_message_length", _GRPC_MAX_MESSAGE),
                    ],
                )
            self._local.client = client
        return client

    def _timeout_kwargs(self) -> dict[str, float]:
        # HTTP timeouts are set on the client (network_timeout); gRPC per call.
        return {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}

    def _where(self) -> str:
        return f"{self.protocol}://{self.url} ({self.server_model!r})"

    # ----------------------------------------------------------------- readiness

    def wait_until_ready(self, timeout_s: float) -> None:
        """Poll server and model readiness until both answer, or raise :class:`BackendUnavailable`."""
        deadline = time.monotonic() + timeout_s
        last = "sin respuesta / no answer"
        while True:
            try:
                client = self._client()
                if not client.is_server_ready(**self._timeout_kwargs()):
                    last = "servidor no listo / server not ready"
                elif not client.is_model_ready(self.server_model, self.server_version, **self._timeout_kwargs()):
                    last = "modelo no listo / model not ready"
                else:
                    return
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise BackendUnavailable(
                    f"El servidor de inferencia o el modelo {self._where()} no está listo tras {timeout_s:g} s "
                    f"(revise MDD_TRITON_URL, MDD_TRITON_PROTOCOL y MDD_TRITON_MODEL_NAME, y que el servidor "
                    f"cargue el modelo) / inference server or model {self._where()} not ready after {timeout_s:g} s "
                    f"(check MDD_TRITON_URL, MDD_TRITON_PROTOCOL, MDD_TRITON_MODEL_NAME and that the server "
                    f"loaded the model); último error / last error: {last}"
                )
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))

    def _check_signature(self) -> None:
        """Fail early when the served model does not have the exported model's inputs and outputs."""
        client = self._client()
        kwargs = self._timeout_kwargs()
        if self.protocol == "grpc":
            meta = client.get_model_metadata(self.server_model, self.server_version, as_json=True, **kwargs)
        else:
            meta = client.get_model_metadata(self.server_model, self.server_version)
        inputs = {t["name"]: [int(d) for d in t.get("shape", [])] for t in meta.get("inputs", [])}
        outputs = {t["name"] for t in meta.get("outputs", [])}
        if not inputs and not outputs:
            # The server does not describe its tensors: ask only for what every served model has.
            self.served_outputs = REQUIRED_OUTPUT_NAMES
            return
        self.served_outputs = tuple(name for name in OUTPUT_NAMES if name in outputs)
        problems = [n for n in INPUT_NAMES if n not in inputs] + [n for n in REQUIRED_OUTPUT_NAMES if n not in outputs]
        for name in INPUT_NAMES:
            shape = inputs.get(name)
            if shape and list(shape[-3:]) != list(INPUT_DIMS):
                problems.append(f"{name} {shape}")
        if problems:
            raise BackendUnavailable(
                f"{self._where()} no sirve el modelo exportado (`mdd export`) / does not serve the exported "
                f"model: {problems}"
            )

    # ----------------------------------------------------------------- inference

    def _with_retries(self, call: Callable[[], T]) -> T:
        attempt = 0
        while True:
            try:
                return call()
            except Exception as exc:
                if not is_retryable(exc):  # the server answered and refused: a deterministic failure
                    raise RuntimeError(
                        f"El servidor de inferencia {self._where()} rechazó la petición / refused the request: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                if attempt >= self.retries:
                    raise BackendUnavailable(
                        f"Inferencia falló en {self._where()} tras {attempt + 1} intento(s) / inference failed "
                        f"after {attempt + 1} attempt(s): {type(exc).__name__}: {exc}"
                    ) from exc
                delay = self.backoff_s * 2**attempt
                log.warning("Reintento / retry %d in %.2fs: %s", attempt + 1, delay, exc)
                # A broken connection may poison the client: make a fresh one.
                self._local.client = None
                time.sleep(delay)
                attempt += 1

    def _infer_once(self, cc: np.ndarray, mlo: np.ndarray) -> Logits:
        client = self._client()
        if self.protocol == "http":
            import tritonclient.http as lib
        else:
            import tritonclient.grpc as lib  # type: ignore[no-redef]
        inputs = []
        for name, array in (("cc", cc), ("mlo", mlo)):
            tensor = lib.InferInput(name, list(array.shape), "FP32")
            if self.protocol == "http":
                tensor.set_data_from_numpy(array, binary_data=self.binary_data)
            else:
                tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        if self.protocol == "http":
            outputs = [lib.InferRequestedOutput(n, binary_data=self.binary_data) for n in self.served_outputs]
        else:
            outputs = [lib.InferRequestedOutput(n) for n in self.served_outputs]
        result = client.infer(
            self.server_model, inputs, model_version=self.server_version, outputs=outputs, **self._timeout_kwargs()
        )
        logits: Logits = {}
        for name in self.served_outputs:
            value = result.as_numpy(name)
            if value is None:
                raise ValueError(f"{self._where()}: falta la salida / missing output {name}")
            logits[name] = np.asarray(value, dtype=np.float32)
        return logits

    def infer_arrays(self, cc: np.ndarray, mlo: np.ndarray) -> Logits:
        """One inference request (retried on transport errors) for a batch."""
        return self._with_retries(lambda: self._infer_once(cc, mlo))
