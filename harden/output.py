"""The formats of `-o/--output`. Apart from the views that write them, so the CLI declares its
options without loading the views and the model (start-up, issue 10)."""

from __future__ import annotations

import enum


class Output(str, enum.Enum):
    """The values of `-o/--output`; typer refuses anything else with a usage error (exit 2)."""

    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"
    SARIF = "sarif"
