"""Triton serving throughput: one server, 1 and 4 camera clients, vs the in-process ORT backend.

    python -m bench.triton_serving [--engines ARTIFACTS] [--frames 40] [--json .benchmarks/triton.json]

One run, figures printed and written as JSON (docs/results/2026-12-triton.md
has this machine's numbers). Not a pytest file and not in ``make
bench``'s gates on purpose: it needs the server venv (tools/setup_triton.sh)
and its figures are for the deployment recipe, not a regression gate.

Measured, all on the same frames (coco-mini's four images, cycled, all boxes):

- aggregate crops/s: in-process ORT with 1 client and with 4 (four pipelines
  in one process, sharing the cores); Triton with 1 and 4 clients, with the
  repository's dynamic batching and with it off (``--no-triton-batching``);
- the server's mean executed batch per model (inference_count /
  execution_count from its statistics): what dynamic batching merged;
- per-request overhead: median round trip of a 1-crop router request through
  Triton minus the same call in-process.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.safe_io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def _frames(coco: Path) -> list[tuple[np.ndarray, list, list]]:
    from runtime.images import load_detections

    per, _ = load_detections(coco / "person_detections.json", coco)
    return [
        (cv2.imread(str(coco / n)), [d.bbox for d in per[n][1]], [d.score for d in per[n][1]])
        for n in sorted(per)
    ]


def _clients(make_pipe: Any, frames: list, n_clients: int, n_frames: int) -> dict[str, float]:
    """n_clients threads, each its own pipeline over n_frames frames; aggregate crops/s."""
    pipes = [make_pipe() for _ in range(n_clients)]
    for p in pipes:  # warm-up: first calls build sessions / channels
        p(*frames[0])
    crops = [0] * n_clients
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            for r in pipes[i].run_many(frames[(i + k) % len(frames)] for k in range(n_frames)):
                crops[i] += int((r.route >= 0).sum())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for p in pipes:
        p.close()
    if errors:
        raise errors[0]
    return {
        "clients": n_clients,
        "frames": n_clients * n_frames,
        "crops": sum(crops),
        "wall_s": wall,
        "crops_per_s": sum(crops) / wall,
    }


def _counts(url: str) -> dict[str, tuple[int, int]]:
    """model -> (inference_count, execution_count): crops served and model executions so far."""
    import tritonclient.grpc as grpcclient

    stats = grpcclient.InferenceServerClient(url).get_inference_statistics(as_json=True)
    return {
        m["name"]: (int(m.get("inference_count", 0)), int(m.get("execution_count", 0)))
        for m in stats.get("model_stats", [])
    }


def _mean_batch(before: dict, after: dict) -> dict[str, float]:
    """Crops per model execution between two snapshots: what the batcher merged."""
    out = {}
    for name, (inf, ex) in after.items():
        inf0, ex0 = before.get(name, (0, 0))
        if ex > ex0:
            out[name] = round((inf - inf0) / (ex - ex0), 2)
    return out


def _overhead_ms(art: Path, url: str, reps: int = 50) -> dict[str, float]:
    from runtime.pose.pipeline import PipelineOptions, PosePipeline

    x = np.zeros((1, 3, 256, 192), np.float32)
    res = {}
    for name, opts in (
        ("ort", PipelineOptions(backend="ort")),
        ("triton", PipelineOptions(backend="triton", backend_options={"url": url})),
    ):
        with PosePipeline(art, opts) as pipe:
            r, s = pipe.runners["router"], pipe.streams["router"]
            r.infer(x, s)
            t = []
            for _ in range(reps):
                t0 = time.perf_counter()
                r.infer(x, s)
                t.append((time.perf_counter() - t0) * 1e3)
            res[name] = float(np.median(t))
    res["overhead_ms"] = res["triton"] - res["ort"]
    return res


def _triton_pipeline(art: Path, url: str) -> Any:
    """One client's pipeline on the Triton server at ``url`` (each client has its own channel)."""
    from runtime.pose.pipeline import PipelineOptions, PosePipeline

    return PosePipeline(
        art, PipelineOptions(backend="triton", backend_options={"url": url, "timeout_s": 300})
    )


def run(art: Path, work: Path, n_frames: int) -> dict[str, Any]:
    from bench.data import shared_data_dir
    from build.triton_repo import RepoOptions, write_repo
    from runtime.pose.pipeline import PipelineOptions, PosePipeline
    from tools.triton_server import start_server

    frames = _frames(shared_data_dir() / "coco-mini")
    result: dict[str, Any] = {"engines": str(art), "frames_per_client": n_frames, "ort": {}, "triton": {}}
    for n in (1, 4):
        result["ort"][str(n)] = _clients(
            lambda: PosePipeline(art, PipelineOptions(backend="ort")), frames, n, n_frames
        )
        print(f"ort    {n} client(s): {result['ort'][str(n)]['crops_per_s']:.0f} crops/s", file=sys.stderr)
    for batching in (True, False):
        repo = work / ("repo-batching" if batching else "repo-nobatching")
        write_repo(art, repo, RepoOptions(kind="python", bls=False, batching=batching))
        srv = start_server(repo, log_path=work / f"{repo.name}.log")
        try:
            tag = "batching" if batching else "no_batching"
            res = result["triton"][tag] = {}
            if batching:
                result["request"] = _overhead_ms(art, srv.grpc_url)
            for n in (1, 4):
                before = _counts(srv.grpc_url)
                res[str(n)] = _clients(partial(_triton_pipeline, art, srv.grpc_url), frames, n, n_frames)
                res[str(n)]["mean_batch"] = _mean_batch(before, _counts(srv.grpc_url))
                print(
                    f"triton {tag:<11} {n} client(s): {res[str(n)]['crops_per_s']:.0f} crops/s, "
                    f"crops per execution {res[str(n)]['mean_batch']}",
                    file=sys.stderr,
                )
        finally:
            srv.stop()
    return result


def print_table(r: dict[str, Any]) -> None:
    print("| path | clients | crops/s | x ORT 1 client | crops per execution (small / large / router) |")
    print("| --- | ---: | ---: | ---: | --- |")
    base = r["ort"]["1"]["crops_per_s"]
    rows = [("in-process ORT", r["ort"])] + [
        (f"Triton, {k.replace('_', ' ')}", v) for k, v in r["triton"].items()
    ]
    for name, d in rows:
        for n in ("1", "4"):
            mb = d[n].get("mean_batch")
            per = " / ".join(f"{mb.get(m, 0):.1f}" for m in ("small", "large", "router")) if mb else "-"
            print(f"| {name} | {n} | {d[n]['crops_per_s']:.1f} | {d[n]['crops_per_s'] / base:.2f} | {per} |")
    q = r["request"]
    print(
        f"1-crop router request: in-process {q['ort']:.2f} ms, via Triton {q['triton']:.2f} ms "
        f"(overhead {q['overhead_ms']:.2f} ms)"
    )


def main(argv: list[str] | None = None) -> int:
    from runtime.errors import guarded

    return guarded(_main, argv, prog="python -m bench.triton_serving")


def _main(argv: list[str]) -> int:
    from runtime.cli.args import DeprecatedAlias, OneLineParser, artifacts_dir, output_file, positive_int

    p = OneLineParser(prog="python -m bench.triton_serving", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--engines",
        type=artifacts_dir,
        default=None,
        help="artifacts folder (default: build the fixture-dyn config for the CPU once)",
    )
    p.add_argument("--frames", type=positive_int, default=40, help="frames per client")
    p.add_argument(
        "--json",
        type=output_file,
        default=Path(".benchmarks/triton.json"),
        metavar="FILE",
        help="where the result JSON goes",
    )
    p.add_argument(
        "--out", dest="json", type=output_file, action=DeprecatedAlias, new="--json", help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-triton-") as tmp:
        work = Path(tmp)
        art = args.engines
        if art is None:
            from bench.data import build_artifacts, shared_data_dir

            art = build_artifacts(
                work / "art", "fixture-dyn", extra=("--calib-data", str(shared_data_dir() / "coco-mini"))
            )
        result = run(art, work, args.frames)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
