"""A seeded 54-day history of a 16,384-GPU job at Llama 3's failure rates, played under
watchdog + manual triage and under Sentinel with more and more of its mechanisms; the reactive
run is written to SQLite for `sentinel report`.

The fault schedule is drawn once (Table 5's 419 unexpected interruptions at uniformly random
times, plus 47 planned ones: `faults`) and played once per variant over the same draws
(`play`). Each unexpected fault is drawn as one of its category's variants of real-format
events (`sentinel.reports.draws`), weighed by the real triage (`triage`), and its verdict
decided by the real `DEFAULT_POLICY`; a wrong verdict costs what it would: a faulty host left
in the job fails the restart again, a healthy host excluded is lost to the job (and waits for
a replacement without a spare), a fabric fault restarted at once fails again. What each
mechanism costs (a swap, a spare, an in-place restart) is modelled; every figure rests on
`assumptions`, each printed with its source (`output`).
"""

from sentinel.reports.simulation.assumptions import VARIANTS, Assumptions, Mechanisms
from sentinel.reports.simulation.faults import Fault, schedule
from sentinel.reports.simulation.output import Sensitivity, describe, sensitivity, write
from sentinel.reports.simulation.play import Outcome, Run, checkpoint_interval, play, run
from sentinel.reports.simulation.triage import accuracy

__all__ = [
    "VARIANTS",
    "Assumptions",
    "Fault",
    "Mechanisms",
    "Outcome",
    "Run",
    "Sensitivity",
    "accuracy",
    "checkpoint_interval",
    "describe",
    "play",
    "run",
    "schedule",
    "sensitivity",
    "write",
]
