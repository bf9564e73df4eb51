"""Benchmark: synthetic flight-recorder dumps at 1k-16k ranks to a verdict (time, peak RSS),
on the command line's path and on the service's (the dumps gzipped as the agent uploads them,
analysed by the leader's entry point: its budgeted process and that process's parsing pool).

.venv/bin/python benchmarks/flight_recorder.py                  # 1,024 and 4,096 ranks
.venv/bin/python benchmarks/flight_recorder.py --ranks 16384    # the 16k target
.venv/bin/python benchmarks/flight_recorder.py --ranks 16384 --reuse --no-service
    # reads (and keeps) the dumps an earlier --keep/--reuse run left: a read that does not
    # start right after the synthesis freed GiBs (this VM then pays for fresh memory)
.venv/bin/python benchmarks/flight_recorder.py --ranks 1024 --torch-python PY
    # also runs torchfrtrace from the torch env PY on the same dumps, as a user runs it and
    # over every entry, and prints what it concluded and the ratio
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sentinel.flightrec.synth import DUMP_PREFIX, Layout, Plan, write_dumps
from sentinel_agent.collectors.flight_recorder import GZIP_LEVEL

# The analysis runs in a child so that its figures (time, RSS of it and its parsing
# workers) include nothing of the synthesis; it reports its own rusage as JSON. It takes
# the command line's steps in its order (`sentinel fr analyze`: list the dumps, start the
# parsing pool, then import the analysis), without its progress bar and warm-up.
_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from pathlib import Path
from sentinel.flightrec.dumpfiles import dump_paths
from sentinel.flightrec.pool_settings import pooled, start_pool
paths, workers = dump_paths(Path(sys.argv[1])), int(sys.argv[2])
pool = start_pool(workers) if pooled(len(paths), workers) else None
from sentinel.flightrec.analyze import analyze_dumps
from sentinel.flightrec.parse import read_dump_set
dumps = read_dump_set(paths, workers, pool=pool)
t1 = time.perf_counter()
v = analyze_dumps(dumps)
t2 = time.perf_counter()
# The parsing pool's workers exit while the analysis runs: wait for them, so that their
# CPU and memory are in RUSAGE_CHILDREN.
import multiprocessing
for child in multiprocessing.active_children():
    child.join()
me = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"read_s": t1 - t0, "analyze_s": t2 - t1, "kind": v.kind.value,
                  "culprits": v.culprit_ranks, "group": v.group, "seq": v.seq,
                  "cpu_self_s": me.ru_utime + me.ru_stime,
                  "cpu_workers_s": kids.ru_utime + kids.ru_stime,
                  "sys_self_s": me.ru_stime, "sys_workers_s": kids.ru_stime,
                  "rss_self_kb": me.ru_maxrss, "rss_workers_kb": kids.ru_maxrss,
                  "verdict": v.model_dump(mode="json")}))
"""
# The service's path: the leader's own entry point (a spawned process under the memory
# budget, parsing in its pool) over gzipped files, as uploads are stored.
_SERVICE = """
import json, resource, sys, time
from pathlib import Path
from sentinel.incidents.flightrec import DEFAULT_MEMORY_BUDGET, analyse_isolated
paths = [(int(p.name.split(".")[0]), str(p)) for p in Path(sys.argv[1]).iterdir()]
t0 = time.perf_counter()
v, errors = analyse_isolated(sorted(paths), {}, DEFAULT_MEMORY_BUDGET, 600, int(sys.argv[2]))
t1 = time.perf_counter()
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"wall_s": t1 - t0, "errors": errors, "budget": DEFAULT_MEMORY_BUDGET,
                  "rss_kb": kids, "verdict": v.model_dump(mode="json")}))
"""


def _gzip_chunk(plan: tuple[Path, Path, list[str]]) -> None:
    source, store, names = plan
    for name in names:
        rank = name.rsplit("_", 1)[1]
        # At the agent's level: the service's inflating depends on it (0.71 ms a dump at
        # level 1, 0.39 at 6, 0.53 at 9).
        data = gzip.compress((source / name).read_bytes(), GZIP_LEVEL, mtime=0)
        (store / f"{rank}.gz").write_bytes(data)


def gzip_dumps(source: Path, store: Path, workers: int) -> float:
    t0 = time.perf_counter()
    store.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in source.iterdir() if p.name.startswith(DUMP_PREFIX))
    step = -(-len(names) // (workers * 4))
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_gzip_chunk, [(source, store, names[i : i + step])
                                    for i in range(0, len(names), step)]))  # fmt: skip
    return time.perf_counter() - t0


def service_path(store: Path, workers: int) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _SERVICE, str(store), str(workers)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def synthesize(plan: Plan, out: Path, workers: int) -> float:
    t0 = time.perf_counter()
    world = plan.layout.world
    step = -(-world // workers)
    with ProcessPoolExecutor(workers) as pool:
        jobs = [
            pool.submit(write_dumps, plan, out, range(i, min(i + step, world)))
            for i in range(0, world, step)
        ]
        for job in jobs:
            job.result()
    return time.perf_counter() - t0


def analyse(out: Path, workers: int) -> tuple[float, dict[str, object]]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(out), str(workers)],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


# PyTorch's own analyzer, run as its CLI runs (`python -m torch.distributed.flight_recorder.
# fr_trace DIR -p PREFIX`), in a child of a probe whose RUSAGE_CHILDREN is then that child's
# peak RSS. The child wraps two of torch's functions only to count entries: how many the dumps
# hold, how many torch keeps after aligning the ranks by record_id, and how many it went
# through before build_collectives returned. Torch stops matching as soon as one group has
# more than --mismatch_cap (default 10) mismatches ("Too many mismatches for process_group ...
# aborting", torch/distributed/flight_recorder/components/builder.py) and leaves every rank's
# remaining entries unread, so it runs twice: as a user runs it, and with the cap out of reach,
# which makes it go through every entry it kept: the like-for-like timing.
_TORCH_RUN = """
import runpy, sys
from torch.distributed.flight_recorder.components import builder
align, match = builder.align_trace_from_beginning, builder.build_collectives
def aligned(entries):
    print("sentinel-probe: dumps", sum(map(len, entries.values())), file=sys.stderr)
    return align(entries)
def counted(entries, *args, **kwargs):
    kept = sum(map(len, entries.values()))
    try:
        return match(entries, *args, **kwargs)
    finally:
        left = sum(map(len, entries.values()))
        print("sentinel-probe: kept", kept, "through", kept - left, file=sys.stderr)
builder.align_trace_from_beginning, builder.build_collectives = aligned, counted
sys.argv[0] = "fr_trace"
runpy.run_module("torch.distributed.flight_recorder.fr_trace", run_name="__main__")
"""
_TORCH_PROBE = """
import json, resource, subprocess, sys, time
log, limit, run, args = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
t0 = time.perf_counter()
with open(log, "wb") as sink:
    try:
        rc = subprocess.run([sys.executable, "-c", run, *args], stdout=sink,
                            stderr=subprocess.STDOUT, timeout=limit).returncode
    except subprocess.TimeoutExpired:
        rc = None
print(json.dumps({"wall_s": time.perf_counter() - t0, "rc": rc,
                  "rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""
_TORCH_TIMEOUT_S = 3600
_TORCH_CAPS = (10, 10**9)  # --mismatch_cap: torch's default, and one out of reach
_FINDING = re.compile(
    r"Not all ranks joining collective|Collective sequence number: \d+ has errors"
    r"|Input/output mismatch in the collective sequence number"
)


@dataclass
class TorchRun:
    """One torchfrtrace run: its probe's figures and what its log says."""

    cap: int
    wall_s: float
    rss_kb: int
    rc: int | None  # None: killed after _TORCH_TIMEOUT_S
    in_dumps: int = 0  # entries in the dumps
    kept: int = 0  # entries left after its alignment by record_id
    through: int = -1  # entries build_collectives went through; -1: it never returned
    gave_up_on: str = ""  # desc of the group whose mismatches stopped it
    findings: Counter[str] = field(default_factory=Counter)  # per group desc
    on_p2p: int = 0  # findings on a send or recv
    named: list[tuple[str, frozenset[int]]] = field(default_factory=list)  # (desc, ranks)
    tail: str = ""  # the end of its log

    @property
    def complete(self) -> bool:
        return self.rc == 0 and self.through == self.kept

    def summary(self, culprit: int) -> str:
        if self.rc is None:
            return f"killed after {_TORCH_TIMEOUT_S} s"
        if self.rc != 0 or self.through < 0:
            return f"failed (exit {self.rc}):\n{self.tail}"
        kept = f"{self.kept:,} entries it kept of {self.in_dumps:,} (after aligning record_ids)"
        if self.gave_up_on:
            done = (
                f"gave up (more than {self.cap} mismatches in a '{self.gave_up_on}' group) "
                f"after {self.through:,} of the {kept}"
            )
        else:
            done = f"went through all {kept}"
        total = sum(self.findings.values())
        found = f"{total:,} findings"
        if total:
            found += " (" + ", ".join(f"{d} {n:,}" for d, n in self.findings.most_common()) + ")"
        if self.on_p2p:
            found += f", {self.on_p2p:,} of them on send/recv"
        alone = sorted({d for d, ranks in self.named if ranks == {culprit}})
        if alone:
            verdict = f"names planted rank {culprit} alone in a finding ({', '.join(alone)})"
        else:
            verdict = f"names planted rank {culprit} alone in no finding"
        return f"{done}; {found}; {verdict}"


def _read_torch_log(run: TorchRun, log: Path) -> None:
    desc, ranks, open_finding = "", set[int](), False
    last: deque[str] = deque(maxlen=15)

    def close() -> None:
        if open_finding:
            run.findings[desc] += 1
            run.named.append((desc, frozenset(ranks)))

    with log.open(errors="replace") as lines:
        for line in lines:
            last.append(line)
            if _FINDING.match(line):
                close()
                desc, ranks, open_finding = "", set(), True
            elif line.startswith("group info: "):  # "group info: <name>:<desc>"
                desc = line.split(": ", 1)[1].strip().split(":", 1)[-1]
            elif line.startswith(("collective: nccl:send", "collective: nccl:recv")):
                run.on_p2p += 1
            elif line.startswith("missing ranks: "):
                ranks.update(map(int, re.findall(r"\d+", line)))
            elif line.startswith("error msg: "):
                ranks.update(map(int, re.findall(r"Culprit rank (\d+)", line)))
            elif line.startswith("Too many mismatches for process_group"):
                run.gave_up_on = line.strip().removesuffix(" aborting").rsplit(": ", 1)[-1]
            elif line.startswith("sentinel-probe: dumps "):
                run.in_dumps = int(line.split()[-1])
            elif line.startswith("sentinel-probe: kept "):
                run.kept, run.through = int(line.split()[2]), int(line.split()[4])
    close()
    run.tail = "".join(last).rstrip()


def torchfrtrace(python: str, out: Path) -> list[TorchRun]:
    """PyTorch's analyzer on the dumps in `out`: as a user runs it, then over every entry."""
    runs = []
    for cap in _TORCH_CAPS:
        log = out / f"torchfrtrace-cap{cap}.log"  # torch skips it: no DUMP_PREFIX in the name
        args = [str(out), "-p", DUMP_PREFIX, "--mismatch_cap", str(cap)]
        done = subprocess.run(
            [python, "-c", _TORCH_PROBE, str(log), str(_TORCH_TIMEOUT_S), _TORCH_RUN, *args],
            check=True,
            capture_output=True,
            text=True,
        )
        fig = json.loads(done.stdout.strip().splitlines()[-1])
        run = TorchRun(cap, fig["wall_s"], fig["rss_kb"], fig["rc"])
        _read_torch_log(run, log)
        runs.append(run)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ranks", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--entries", type=int, default=2000)
    ap.add_argument("--kind", default="missing", choices=["missing", "stuck", "mismatch"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/sentinel-fr-bench"))
    ap.add_argument("--keep", action="store_true", help="keep the synthetic dumps")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="read the dumps an earlier --keep run left in --out-dir (if made for the same "
        "plan; else make them) and keep them: the read then starts on a machine in its steady "
        "state, not right after the synthesis (see docs/flight-recorder.md)",
    )
    ap.add_argument("--no-service", action="store_true", help="skip the service's path")
    ap.add_argument("--torch-python", help="python of an env with torch, for torchfrtrace")
    args = ap.parse_args()

    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    for world in args.ranks:
        culprit = world // 2 + 5
        plan = Plan(Layout(world), entries=args.entries, kind=args.kind, culprit=culprit)
        out = args.out_dir / f"ranks-{world}"
        manifest = out / ".plan.json"  # (dump_paths skips dot files)
        wanted = json.dumps(dataclasses.asdict(plan), sort_keys=True)
        if args.reuse and manifest.is_file() and manifest.read_text() == wanted:
            origin = "made by an earlier run"
        else:
            shutil.rmtree(out, ignore_errors=True)
            origin = f"made in {synthesize(plan, out, args.workers):.0f} s"
            manifest.write_text(wanted)
        size = sum(p.stat().st_size for p in out.iterdir())
        # The dumps were written by the ranks' hosts long before anyone reads them: the
        # generator's own writeback (GiBs still dirty in the page cache) is flushed before the
        # clock starts, not charged to the reading.
        t_sync = time.perf_counter()
        os.sync()
        synced = time.perf_counter() - t_sync
        load = os.getloadavg()[0]
        try:
            wall, fig = analyse(out, args.workers)
            found = fig["culprits"] == [culprit]
            cpu_self, cpu_workers = float(str(fig["cpu_self_s"])), float(str(fig["cpu_workers_s"]))
            print(
                f"{world:>6} ranks x {args.entries} entries ({size / 2**30:.2f} GiB pickle, "
                f"{origin}, synced in {synced:.0f} s): verdict in {wall:.1f} s "
                f"(read {fig['read_s']:.1f} s, analyse {fig['analyze_s']:.1f} s; CPU "
                f"{cpu_self + cpu_workers:.1f} s: collecting process {cpu_self:.1f} (system "
                f"{fig['sys_self_s']:.1f}) + parsing workers {cpu_workers:.1f} (system "
                f"{fig['sys_workers_s']:.1f}); load average {load:.1f} before), peak RSS "
                f"{int(str(fig['rss_self_kb'])) / 2**20:.2f} GiB main + "
                f"{int(str(fig['rss_workers_kb'])) / 2**20:.2f} GiB largest worker; "
                f"{fig['kind']} rank(s) {fig['culprits']} in group {fig['group']} "
                f"#{fig['seq']} ({'planted culprit found' if found else 'WRONG VERDICT'})"
            )
            if not args.no_service:
                store = args.out_dir / f"service-{world}"
                shutil.rmtree(store, ignore_errors=True)
                zipped = gzip_dumps(out, store, args.workers)
                try:
                    svc = service_path(store, args.workers)
                finally:
                    shutil.rmtree(store, ignore_errors=True)
                same = svc["verdict"] == fig["verdict"] and not svc["errors"]
                print(
                    f"        service path (gzipped in {zipped:.0f} s): verdict in "
                    f"{svc['wall_s']:.1f} s, peak RSS "
                    f"{int(str(svc['rss_kb'])) / 2**20:.2f} GiB largest process under a "
                    f"{int(str(svc['budget'])) / 2**30:.0f} GiB budget; "
                    + ("the same verdict" if same else f"DIFFERENT VERDICT {svc}")
                )
            if args.torch_python:
                runs = torchfrtrace(args.torch_python, out)
                for run in runs:
                    ratio = f", {run.wall_s / wall:.1f}x our time" if run.complete else ""
                    print(
                        f"        torchfrtrace --mismatch_cap {run.cap}: {run.wall_s:.1f} s, "
                        f"peak RSS {run.rss_kb / 2**20:.2f} GiB{ratio}; {run.summary(culprit)}"
                    )
                if any(run.on_p2p for run in runs):
                    print(
                        "        (torchfrtrace matches a send or recv against every member of "
                        "its group, not only the peer: in a pp group of more than 2 ranks, "
                        "p2p ops count as mismatches)"
                    )
        finally:
            if not (args.keep or args.reuse):
                shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
