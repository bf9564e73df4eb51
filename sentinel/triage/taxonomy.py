"""The root-cause taxonomy, kept where triage's callers look for it (it lives in knowledge)."""

from sentinel.knowledge.taxonomy import (
    CATEGORIES,
    LLAMA3_PLANNED_INTERRUPTIONS,
    LLAMA3_TABLE5,
    LLAMA3_UNEXPECTED_INTERRUPTIONS,
    Category,
    CategoryFacts,
    Scope,
    llama3_share,
)

__all__ = [
    "CATEGORIES",
    "LLAMA3_PLANNED_INTERRUPTIONS",
    "LLAMA3_TABLE5",
    "LLAMA3_UNEXPECTED_INTERRUPTIONS",
    "Category",
    "CategoryFacts",
    "Scope",
    "llama3_share",
]
