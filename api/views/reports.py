"""JSON twins of the reports (SPEC section 4) — filled in once analytics.reports lands."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["reports"])
