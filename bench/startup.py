"""Time to first score: ``finsentry classify "one text"`` from a cold process, end to end.

Runs the command in a fresh process per round, for this checkout and, with ``--before``,
for another one (an older commit unpacked somewhere), interleaved round by round so both
see the same machine load. Each checkout gets its own data dir and a warm-up round that is
not counted (the first run creates the store and exports the ONNX files). Prints the
median and min wall time and CPU time (user + system of the process) per checkout, and the
ratio of medians: on a shared machine compare within a run.

    PYTHONPATH=. python -m bench.startup [--before DIR] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEXT = "Acme files for Chapter 11 bankruptcy protection"
HERE = Path(__file__).resolve().parents[1]


def run_once(checkout: Path, data_dir: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``finsentry classify`` in ``checkout``."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "FINSENTRY_DATA_DIR": str(data_dir)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "finsentry", "classify", TEXT],
        cwd=checkout,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another checkout to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    checkouts = {"this": HERE}
    if args.before is not None:
        checkouts = {"before": args.before.resolve(), **checkouts}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="finsentry-startup-") as tmp:
        dirs = {name: Path(tmp) / name for name in checkouts}
        for name, checkout in checkouts.items():
            run_once(checkout, dirs[name])  # warm-up: store, ONNX export
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in checkouts}
        for _ in range(args.rounds):
            for name, checkout in checkouts.items():
                times[name].append(run_once(checkout, dirs[name]))
    print(f"finsentry classify {TEXT!r}: {args.rounds} rounds, load average {load:.1f} at start")
    print(f"{'checkout':<8} {'wall median':>12} {'wall min':>9} {'CPU median':>11} {'CPU min':>8}")
    medians = {}
    for name, rows in times.items():
        walls, cpus = [w for w, _ in rows], [c for _, c in rows]
        medians[name] = statistics.median(walls)
        print(
            f"{name:<8} {medians[name]:>11.2f}s {min(walls):>8.2f}s "
            f"{statistics.median(cpus):>10.2f}s {min(cpus):>7.2f}s"
        )
    if "before" in medians:
        print(f"median wall time, before / this: {medians['before'] / medians['this']:.1f}x")


if __name__ == "__main__":
    main()
