"""`make bench-flood`: 64 clients that ignore Retry-After, for 30 s, straight to uvicorn and through nginx.

    .venv/bin/python -m bench.flood --model models/resnet50.onnx [--seconds 30]

Each client resends its upload the moment an answer comes back, whatever the answer, as a new user's script or a
retry loop without back-off does. The flood comes from one address (wrk) and from eight (this process's own
clients, from 127.0.0.2 to 127.0.0.9: a per-address limit in nginx does not help against those). Goodput is the
200 answers per second, compared with the same server unloaded (8 connections), measured just before and just
after each flood since a shared machine's speed drifts; p99 is over every answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench.path import ROOT, Server, service, stack
from bench.quick import multipart, photo_jpeg
from bench.run import provenance, wrk
from tests.support.load import run_load

SOURCES = tuple(f"127.0.0.{host}" for host in range(2, 10))


def flood_from_one_address(server: Server, body: Path, clients: int, seconds: float) -> dict[str, object]:
    figures = wrk(server.url, body, clients, seconds, script="flood.lua")
    return {
        "statuses": {int(status): count for status, count in figures["statuses"].items()},
        "seconds": figures["seconds"],
        "p99_all_ms": figures["p99_ms"],
        "errors": figures["connect_errors"] + figures["read_errors"] + figures["write_errors"] + figures["timeouts"],
    }


def flood_from_many_addresses(server: Server, image: bytes, clients: int, seconds: float) -> dict[str, object]:
    result = run_load(server.url, image, clients, seconds, honour_retry_after=False, sources=SOURCES)
    return {
        "statuses": dict(result.statuses),
        "seconds": result.seconds,
        "p99_all_ms": result.percentile_ms(99, everything=True),
        "errors": len(result.errors),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models/resnet50.onnx")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of flood per run (default: 30)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/flood.json")
    parser.add_argument(
        "--env", action="append", default=[], metavar="RESNET_X=V", help="a setting for the service (repeatable)"
    )
    parser.add_argument("--direct-only", action="store_true", help="flood uvicorn only, not nginx as well")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    measured = provenance()
    image = photo_jpeg()
    rows = []
    with ExitStack() as servers:
        scratch = Path(servers.enter_context(tempfile.TemporaryDirectory()))
        body = scratch / "body.bin"
        body.write_bytes(multipart(image))
        targets = [servers.enter_context(service(args.model, env, name="uvicorn"))]
        if not args.direct_only:
            targets.append(servers.enter_context(stack(args.model, scratch / "stack", env)))
        for target in targets:
            floods = {
                "one address (wrk)": lambda t=target: flood_from_one_address(t, body, args.clients, args.seconds),
                "8 addresses": lambda t=target: flood_from_many_addresses(t, image, args.clients, args.seconds),
            }
            # The machine's speed drifts: each flood is compared with unloaded runs just before and just after it.
            before = wrk(target.url, body, 8, 10)["requests_per_s"]
            for source, flood_run in floods.items():
                flood = flood_run()
                after = wrk(target.url, body, 8, 10)["requests_per_s"]
                unloaded, before = (before + after) / 2, after
                goodput = flood["statuses"].get(200, 0) / flood["seconds"]
                row = {"target": target.name, "source": source, "unloaded": unloaded, **flood}
                row["goodput"], row["ratio"] = goodput, goodput / unloaded
                rows.append(row)
                print(f"{target.name}, {source}: {goodput:.1f}/s of 200 (unloaded {unloaded:.1f}/s)", flush=True)
    shown = f", settings {env}" if env else ""
    print(f"\n=== flood: {args.clients} connections ignoring Retry-After, {args.seconds:.0f} s each{shown}")
    print(f"  {'target':<26} {'from':<18} {'goodput':>8} {'unloaded':>9} {'ratio':>6} {'p99 all':>8}  errors  statuses")
    for row in rows:
        statuses = dict(sorted(row["statuses"].items()))
        print(
            f"  {row['target']:<26} {row['source']:<18} {row['goodput']:8.1f} {row['unloaded']:9.1f} "
            f"{row['ratio']:5.2f}× {row['p99_all_ms']:6.0f}ms  {row['errors']:6}  {statuses}"
        )
    print("  targets: only 200 and 503/429, no connection errors, goodput ≥ 0.80× unloaded, p99 of all answers ≤ 3 s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**measured, "settings": env, "runs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
