"""Sub-commands registered into `storeflow` by storeflow.cli (see AREAS there)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add these sub-commands to the `storeflow` parser."""
