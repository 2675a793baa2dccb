"""Sub-commands of the ingest area (registered into `storeflow` by storeflow.cli)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the `storeflow` parser."""
