"""Time from C-STORE to the triage light, embedded mode, one process (prints its figures).

A synthetic four-view study is pushed with pynetdicom to the real SCP of an in-process system
(memory transport, local folder, SQLite, torch on the CPU); the script reports how long each study
took from the first C-STORE to ``study.inferred`` and how long each stage took.

    .venv/bin/python benchmarks/pipeline_latency.py --studies 5 --rows 2048 --cols 1664
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from shared.runtime import build_context, run_until_stopped
from shared.settings import Settings
from shared.synth import make_study
from services.demo import send_study
from services.cli import registrar_of

SERVICES = ["ingest", "preprocess", "infer", "notify", "status_api"]


async def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            data_dir=Path(folder), dicom_port=args.port, api_port=args.port + 1, ingest_http_port=args.port + 2, study_quiet_seconds=30, log_level="WARNING",
            model_backbone=args.backbone,
            model_weights="untrained" if args.untrained else None,
        )
        ctx = build_context(settings)
        stop = asyncio.Event()
        runner = asyncio.create_task(run_until_stopped(ctx, [registrar_of(name) for name in SERVICES], stop))
        while not ctx.ready.get("all"):
            await asyncio.sleep(0.05)
        studies = [make_study(seed=1000 + i, rows=args.rows, cols=args.cols, finding="mass") for i in range(args.studies)]
        totals, stages = [], {"ingest": [], "preprocess": [], "infer": []}
        model = ""
        for study in studies:
            start = time.perf_counter()
            statuses = await asyncio.to_thread(send_study, study, "127.0.0.1", args.port, "MDD", "BENCH")
            assert not any(statuses), statuses
            sent = time.perf_counter()
            times: dict[str, float] = {}
            while "study.inferred" not in times:
                for topic, payload in ctx.bus.sent:  # type: ignore[attr-defined]
                    event = json.loads(payload)
                    if event.get("study_uid") == study.study_uid and event["event_type"] not in times:
                        times[event["event_type"]] = time.perf_counter()
                        if event["event_type"] == "study.inferred":
                            model = f"{event['model_name']} {event['model_version']} ({event['model_trained_on']})"
                await asyncio.sleep(0.005)
            totals.append(times["study.inferred"] - start)
            stages["ingest"].append(sent - start)
            stages["preprocess"].append(times["study.preprocessed"] - times["study.completed"])
            stages["infer"].append(times["study.inferred"] - times["study.preprocessed"])
        stop.set()
        await runner
    print(f"Estudios / studies: {args.studies} x 4 vistas {args.rows}x{args.cols} (16 bits), CPU; modelo / model: {model}")
    print(f"C-STORE → semáforo de triaje / triage light: mediana {statistics.median(totals):.2f} s, máx {max(totals):.2f} s")
    for name, values in stages.items():
        print(f"  {name:<10} mediana / median {statistics.median(values):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=5)
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--cols", type=int, default=1664)
    parser.add_argument("--untrained", action="store_true", help="random weights instead of the shipped model")
    parser.add_argument("--backbone", default="efficientnet_b0", choices=["efficientnet_b0", "compact_cnn", "small_cnn"],
                        help="backbone of the untrained model")
    parser.add_argument("--port", type=int, default=11300)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
