"""The flight-recorder analysis without the `fast` extra (numba): `sentinel fr analyze` in a
process where numba and llvmlite cannot be imported reads every dump with the restricted
unpickler and groups with polars, and gives the same verdict as the compiled path. With
numba, the first run on a cold cache says that it compiles (issue 18: 25 s in silence)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import dump_dir

# `sentinel` with numba and llvmlite unimportable, as where the `fast` extra is not installed;
# it fails loudly if anything imported them anyway.
_WITHOUT_NUMBA = """
import sys
from importlib.abc import MetaPathFinder

class Absent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"numba", "llvmlite"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
sys.argv = ["sentinel", *sys.argv[1:]]
from sentinel.cli import main
try:
    main()
finally:
    from sentinel.flightrec import jit
    assert not jit.AVAILABLE and "numba" not in sys.modules
"""


def _analyze(
    prefix: list[str], folder: Path, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    run = subprocess.run(
        [*prefix, "fr", "analyze", "--json", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    return run.returncode, run.stdout, run.stderr


@pytest.mark.parametrize("scenario", ["healthy", "hang_cascade", "mismatch", "wrong_op"])
@pytest.mark.parametrize("fmt", ["raw", "json"])
def test_the_same_verdict_without_numba(scenario: str, fmt: str) -> None:
    folder = dump_dir(scenario, fmt)
    code, fast, _ = _analyze([sys.executable, "-m", "sentinel.cli"], folder)
    slow_code, slow, slow_err = _analyze([sys.executable, "-c", _WITHOUT_NUMBA], folder)
    assert slow_code == code, slow_err
    assert slow == fast
    assert '"kind"' in slow
    assert "compiling" not in slow_err  # nothing to compile without numba


def _cache_missing_one_kernel(cache: Path, left_out: str) -> None:
    """NUMBA_CACHE_DIR as the first run after an upgrade that changed one kernel finds it:
    what the rest of the suite compiled into the source tree's cache, copied where numba
    looks for it in `cache`, but for `left_out`'s files. (A wholly cold cache compiles the
    whole fast path, ~25 s; with nothing in the tree's cache yet, this is that case.)"""
    from numba.core.caching import UserProvidedCacheLocator

    from sentinel.flightrec import scan

    module = Path(scan.__file__)
    target = cache / UserProvidedCacheLocator.get_suitable_cache_subpath(str(module))
    target.mkdir(parents=True)
    for cached in (module.parent / "__pycache__").glob("*.nb[ic]"):
        if not cached.name.startswith(left_out + "-"):
            shutil.copy2(cached, target / cached.name)


@pytest.mark.slow
def test_the_first_run_says_it_compiles_and_later_runs_do_not(tmp_path: Path) -> None:
    """A numba cache without a kernel the CLI runs compiles it once, with a line that says
    so; the next run loads the cache and says nothing of it."""
    _cache_missing_one_kernel(tmp_path / "numba-cache", "grouping._min_max_by_key")
    env = os.environ | {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    folder = dump_dir("hang", "raw")
    cli = [sys.executable, "-m", "sentinel.cli"]
    code, first, first_err = _analyze(cli, folder, env)
    assert code == 1, first_err
    assert "compiling the flight-recorder fast path, once" in first_err
    assert "done in" in first_err
    code, second, second_err = _analyze(cli, folder, env)
    assert code == 1, second_err
    assert "compiling" not in second_err
    assert second == first
