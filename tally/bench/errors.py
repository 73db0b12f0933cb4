"""The error every part of `tally bench` raises when the run cannot go on."""

from __future__ import annotations


class BenchError(RuntimeError):
    """The benchmark could not run."""
