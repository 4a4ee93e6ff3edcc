"""Operator commands (status, failures, reprocess, reconcile, quality, launch, bench), registered
on the main ``cli`` group. The queries live in ``ops.py``; this module only formats."""
from __future__ import annotations

from .cli import cli  # noqa: F401
