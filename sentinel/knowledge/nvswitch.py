"""The NVSwitch SXid catalog (sxid.yaml): what the SXids seen in public reports mean.

Whether an SXid is fatal is the driver's word on the line itself; the catalog adds the meaning
and NVIDIA's action, where known.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sentinel.knowledge import KNOWLEDGE_DIR, KnowledgeError


class SxidEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: int = Field(ge=1)
    fatal: bool
    meaning: str = Field(min_length=1)
    action: Literal["RESTART_BM", "IGNORE"]
    source: str = Field(min_length=1)


class SxidCatalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sxids: tuple[SxidEntry, ...]

    @cached_property
    def by_code(self) -> Mapping[int, SxidEntry]:
        return {s.code: s for s in self.sxids}


def load_sxid_catalog(path: Path | str = KNOWLEDGE_DIR / "sxid.yaml") -> SxidCatalog:
    path = Path(path)
    try:
        return SxidCatalog.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise KnowledgeError(f"{path}: {exc}") from exc


@lru_cache(maxsize=1)
def default_sxid_catalog() -> SxidCatalog:
    return load_sxid_catalog()
