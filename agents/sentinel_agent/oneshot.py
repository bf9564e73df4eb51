"""The configuration of the one-shot commands slurmd runs (``check``, ``epilog``): one section
of the agent's config, read without the rest. They need no service URL or token, so a node
whose agent config lacks them (or whose token file root cannot read) can still be checked."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sentinel_agent.config import _merge, env_overrides


def load_section(path: Path | None, name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One top-level section (file, then SENTINEL_AGENT_<NAME>__* variables), unvalidated."""
    raw: Any = {}
    if path is not None:
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
    data = _merge(raw, env_overrides(os.environ if environ is None else environ))
    return data.get(name) or {}
