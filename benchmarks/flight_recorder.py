"""Benchmark: synthetic flight-recorder dumps at 1k-16k ranks to a verdict (time, peak RSS).

    .venv/bin/python benchmarks/flight_recorder.py                  # 1,024 and 4,096 ranks
    .venv/bin/python benchmarks/flight_recorder.py --ranks 16384    # the 16k target
    .venv/bin/python benchmarks/flight_recorder.py --ranks 1024 --torch-python PY
        # also runs torchfrtrace from the torch env PY on the same dumps and prints the ratio
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from sentinel.flightrec.synth import DUMP_PREFIX, Layout, Plan, write_dumps

# The analysis runs in a child so that its figures (time, RSS of it and its parsing
# workers) include nothing of the synthesis; it reports its own rusage as JSON.
_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from pathlib import Path
from sentinel.flightrec.analyze import analyze_dumps
from sentinel.flightrec.parse import dump_paths, read_dumps
dumps = read_dumps(dump_paths(Path(sys.argv[1])), int(sys.argv[2]))
t1 = time.perf_counter()
v = analyze_dumps(dumps)
t2 = time.perf_counter()
me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"read_s": t1 - t0, "analyze_s": t2 - t1, "kind": v.kind.value,
                  "culprits": v.culprit_ranks, "group": v.group, "seq": v.seq,
                  "rss_self_kb": me, "rss_workers_kb": kids}))
"""


def synthesize(plan: Plan, out: Path, workers: int) -> float:
    t0 = time.perf_counter()
    world = plan.layout.world
    step = -(-world // workers)
    with ProcessPoolExecutor(workers) as pool:
        jobs = [pool.submit(write_dumps, plan, out, range(i, min(i + step, world)))
                for i in range(0, world, step)]
        for job in jobs:
            job.result()
    return time.perf_counter() - t0


def analyse(out: Path, workers: int) -> tuple[float, dict[str, object]]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD, str(out), str(workers)],
                          check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def torchfrtrace(python: str, out: Path) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KB) and the first lines of PyTorch's own analyzer."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "p = subprocess.run([sys.executable, '-m', "
        "'torch.distributed.flight_recorder.fr_trace', sys.argv[1], '-p', sys.argv[2]], "
        "capture_output=True, text=True); "
        "print(time.perf_counter() - t, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "print(p.stdout[:2000]); print(p.stderr[-2000:])"
    )
    done = subprocess.run([python, "-c", probe, str(out), DUMP_PREFIX],
                          check=True, capture_output=True, text=True)
    first, _, rest = done.stdout.partition("\n")
    seconds, rss = first.split()
    return float(seconds), int(rss), rest.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--entries", type=int, default=2000)
    ap.add_argument("--kind", default="missing", choices=["missing", "stuck", "mismatch"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/sentinel-fr-bench"))
    ap.add_argument("--keep", action="store_true", help="keep the synthetic dumps")
    ap.add_argument("--torch-python", help="python of an env with torch, for torchfrtrace")
    args = ap.parse_args()

    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    for world in args.ranks:
        culprit = world // 2 + 5
        plan = Plan(Layout(world), entries=args.entries, kind=args.kind, culprit=culprit)
        out = args.out_dir / f"ranks-{world}"
        shutil.rmtree(out, ignore_errors=True)
        made = synthesize(plan, out, args.workers)
        size = sum(p.stat().st_size for p in out.iterdir())
        try:
            wall, fig = analyse(out, args.workers)
            found = fig["culprits"] == [culprit]
            print(f"{world:>6} ranks x {args.entries} entries ({size / 2**30:.2f} GiB pickle, "
                  f"made in {made:.0f} s): verdict in {wall:.1f} s "
                  f"(read {fig['read_s']:.1f} s, analyse {fig['analyze_s']:.1f} s), peak RSS "
                  f"{int(str(fig['rss_self_kb'])) / 2**20:.2f} GiB main + "
                  f"{int(str(fig['rss_workers_kb'])) / 2**20:.2f} GiB largest worker; "
                  f"{fig['kind']} rank(s) {fig['culprits']} in group {fig['group']} "
                  f"#{fig['seq']} ({'planted culprit found' if found else 'WRONG VERDICT'})")
            if args.torch_python:
                seconds, rss, text = torchfrtrace(args.torch_python, out)
                print(f"        torchfrtrace: {seconds:.1f} s, peak RSS {rss / 2**20:.2f} GiB;"
                      f" ratio {seconds / wall:.1f}x\n{text}")
        finally:
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
