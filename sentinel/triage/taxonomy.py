"""The root-cause taxonomy, kept where triage's callers look for it (it lives in knowledge)."""

from sentinel.knowledge.taxonomy import (
    GPU_CATEGORIES,
    HARDWARE_CATEGORIES,
    LLAMA3_PLANNED_INTERRUPTIONS,
    LLAMA3_TABLE5,
    LLAMA3_UNEXPECTED_INTERRUPTIONS,
    Category,
    llama3_share,
)

__all__ = [
    "GPU_CATEGORIES",
    "HARDWARE_CATEGORIES",
    "LLAMA3_PLANNED_INTERRUPTIONS",
    "LLAMA3_TABLE5",
    "LLAMA3_UNEXPECTED_INTERRUPTIONS",
    "Category",
    "llama3_share",
]
