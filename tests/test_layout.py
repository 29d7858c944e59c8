"""The package's layering, as docs/design.md lists it: each top-level folder or module
imports only those listed above it, so the data flow reads top to bottom."""

from __future__ import annotations

import re
from pathlib import Path

import synthpm

ORDER = (
    "columns",
    "data",
    "text",
    "features",
    "forecast",
    "research",
    "limits",
    "context",
    "signals",
    "metrics",
    "dataset",
    "lm",
    "agent",
    "strategies",
    "portfolio",
    "report",
    "backtest",
    "learn",
    "journal",
    "serve",
    "cli",
)
IMPORT = re.compile(r"^\s*(?:from|import) synthpm\.(\w+)", re.MULTILINE)


def test_every_part_is_placed_in_the_layering():
    root = Path(synthpm.__file__).parent
    parts = {p.stem if p.is_file() else p.name for p in root.iterdir()}
    # the package, and the shared utilities every layer may use
    parts -= {"__init__", "__pycache__", "progress", "folders", "executor"}
    assert parts == set(ORDER)


def test_no_part_imports_one_below_it():
    root = Path(synthpm.__file__).parent
    rank = {name: i for i, name in enumerate(ORDER)}
    upward = []
    for path in root.rglob("*.py"):
        part = path.relative_to(root).parts[0].removesuffix(".py")
        if part not in rank:
            continue
        for imported in IMPORT.findall(path.read_text()):
            if imported in rank and rank[imported] > rank[part]:
                upward.append(f"{path.relative_to(root)} imports synthpm.{imported}")
    assert not upward, upward
