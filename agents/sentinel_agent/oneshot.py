"""The configuration of the one-shot commands slurmd runs (``check``, ``epilog``): one section
of the agent's config, read without the rest. They need no service URL or token, so a node
whose agent config lacks them (or whose token file root cannot read) can still be checked."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sentinel_agent.config import load_tree


def load_section(path: Path | None, name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One top-level section (file, then SENTINEL_AGENT_<NAME>__* variables), unvalidated."""
    return load_tree(path, environ).get(name) or {}
