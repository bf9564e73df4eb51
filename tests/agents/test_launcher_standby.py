"""The reference launcher and an exclusion carried out in the job: the excluded host's launcher
stops its command for good, the survivors restart it and a standby's launcher starts it, each
told the hosts excluded and the standby (SENTINEL_EXCLUDED_HOSTS, SENTINEL_STANDBY_HOST)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_launcher import Advice, advice, launcher

__all__ = ["advice"]  # the fixture

# Each run logs its environment's exclusion and runs as plan.json says: "fail", "hang", "ok".
FAKE_TORCHRUN = """
import json, os, sys, time
here = os.path.dirname(os.path.abspath(__file__))
plan = json.load(open(os.path.join(here, "plan.json")))
runs = os.path.join(here, "runs.log")
n = sum(1 for _ in open(runs)) if os.path.exists(runs) else 0
with open(runs, "a") as f:
    f.write(os.environ.get("SENTINEL_EXCLUDED_HOSTS", "-") + " "
            + os.environ.get("SENTINEL_STANDBY_HOST", "-") + "\\n")
what = plan[min(n, len(plan) - 1)]
if what == "hang":
    time.sleep(600)
sys.exit(0 if what == "ok" else 3)
"""


def fake(tmp_path: Path, plan: list[str]) -> list[str]:
    (tmp_path / "torchrun.py").write_text(FAKE_TORCHRUN)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    return [sys.executable, str(tmp_path / "torchrun.py")]


def runs(tmp_path: Path) -> list[str]:
    path = tmp_path / "runs.log"
    return path.read_text().splitlines() if path.exists() else []


def exclusion(advice: Advice, decision: str, culprit: str, standby: str) -> None:
    advice.in_place(decision)
    advice.body["restart_exclude_hosts"] = [culprit]
    advice.body["restart_standby_host"] = standby


def until(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return
        threading.Event().wait(0.05)
    raise AssertionError("timed out")


def in_thread(target: Callable[[], int]) -> tuple[threading.Thread, list[int]]:
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(target()), daemon=True)
    t.start()
    return t, done


def test_a_survivor_restarts_without_the_excluded_host_and_with_the_standby(
    tmp_path: Path, advice: Advice
) -> None:
    command = fake(tmp_path, ["hang", "ok"])
    t, done = in_thread(launcher(command, advice, host="node1").run)
    until(lambda: len(runs(tmp_path)) == 1)
    exclusion(advice, "d-1", "node3", "node5")
    t.join(timeout=30)
    assert done == [0] and runs(tmp_path) == ["- -", "node3 node5"]
    [(path, body)] = advice.acks
    assert path == "/api/v1/decisions/d-1/ack" and body["outcome"] == "done"
    assert "without node3, with node5" in body["detail"]


def test_the_excluded_hosts_launcher_stops_its_command_and_waits(
    tmp_path: Path, advice: Advice
) -> None:
    command = fake(tmp_path, ["hang", "ok"])
    excluded = launcher(command, advice, host="node3")
    t, done = in_thread(excluded.run)
    until(lambda: len(runs(tmp_path)) == 1)
    exclusion(advice, "d-2", "node3", "node5")
    until(lambda: excluded.excluded)
    threading.Event().wait(0.5)
    assert t.is_alive() and done == []  # waits for the job's end, running nothing
    assert runs(tmp_path) == ["- -"] and advice.acks == []  # not restarted, nothing to say
    excluded.stop_waiting.set()
    t.join(timeout=30)
    assert done == [0]


def test_a_standby_starts_only_when_a_decision_names_it(tmp_path: Path, advice: Advice) -> None:
    command = fake(tmp_path, ["ok"])
    standby = launcher(command, advice, host="node5", standby=True)
    t, done = in_thread(standby.run)
    advice.in_place("d-3")  # a restart in place of the same hosts: not the standby's
    threading.Event().wait(0.5)
    exclusion(advice, "d-4", "node3", "node6")  # another host's standby
    threading.Event().wait(0.5)
    assert runs(tmp_path) == [] and advice.acks == []
    exclusion(advice, "d-5", "node3", "node5")
    t.join(timeout=30)
    assert done == [0] and runs(tmp_path) == ["node3 node5"]
    [(path, body)] = advice.acks
    assert path == "/api/v1/decisions/d-5/ack" and "standby node5 joined" in body["detail"]


def test_an_acknowledged_exclusion_still_reaches_the_launchers_that_have_not_acted(
    tmp_path: Path, advice: Advice
) -> None:
    """Once the first launcher acknowledged it, the advice says restart_in_place false (the
    restarted ranks are not told to restart) but still names the exclusion."""
    exclusion(advice, "d-7", "node3", "node5")
    advice.body["restart_in_place"] = False
    assert launcher(fake(tmp_path, ["fail", "ok"]), advice, host="node2").run() == 0
    assert runs(tmp_path) == ["- -", "node3 node5"]


def test_hosts_outside_the_alphabet_are_not_put_in_the_environment(
    tmp_path: Path, advice: Advice
) -> None:
    advice.in_place("d-6")
    advice.body["restart_exclude_hosts"] = ["node3", "a b"]
    advice.body["restart_standby_host"] = "$(reboot)"
    kw: dict[str, Any] = {"host": "node1"}
    assert launcher(fake(tmp_path, ["fail", "ok"]), advice, **kw).run() == 0
    assert runs(tmp_path) == ["- -", "- -"]  # a plain restart in place
