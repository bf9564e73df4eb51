"""The report's output formats: their own module so that the CLI loads no polars to list them."""

from __future__ import annotations

from enum import StrEnum


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    md = "md"
