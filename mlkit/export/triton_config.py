"""The ``config.pbtxt`` of the two-view model in a Triton / KServe v2 model repository."""

from __future__ import annotations

from services.infer.backends.signature import INPUT_DIMS, INPUT_NAMES, OUTPUT_DIMS, OUTPUT_NAMES


def _tensor(name: str, dims: tuple[int, ...]) -> str:
    shown = ", ".join(str(d) for d in dims)
    return f'  {{\n    name: "{name}"\n    data_type: TYPE_FP32\n    dims: [ {shown} ]\n  }}'


def triton_config(
    model_name: str,
    max_batch_size: int,
    max_queue_delay_us: int = 2000,
    instance_count: int = 1,
    instance_kind: str = "KIND_CPU",
) -> str:
    """Model configuration in protobuf text format for the ``onnxruntime_onnx`` platform.

    The batch axis is implicit (``max_batch_size`` > 0), so ``dims`` are per breast; dynamic
    batching lets the server merge requests from concurrent studies for up to
    ``max_queue_delay_us`` microseconds.
    """
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size debe ser ≥ 1 / must be ≥ 1: {max_batch_size}")
    preferred = sorted({b for b in (4, 8, 16, max_batch_size) if b <= max_batch_size})
    inputs = ",\n".join(_tensor(name, INPUT_DIMS) for name in INPUT_NAMES)
    outputs = ",\n".join(_tensor(name, OUTPUT_DIMS[name]) for name in OUTPUT_NAMES)
    return (
        f'name: "{model_name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {max_batch_size}\n"
        f"input [\n{inputs}\n]\n"
        f"output [\n{outputs}\n]\n"
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {', '.join(str(b) for b in preferred)} ]\n"
        f"  max_queue_delay_microseconds: {max_queue_delay_us}\n"
        "}\n"
        f"instance_group [\n  {{\n    count: {instance_count}\n    kind: {instance_kind}\n  }}\n]\n"
        "version_policy: { latest: { num_versions: 1 } }\n"
    )
