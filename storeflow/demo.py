"""`storeflow demo`: the whole pipeline on one machine (filled in by the demo issue)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add `storeflow demo` to the parser."""
