"""Process-wide runtime settings of a serving process (ADR 0009).

The cyclic garbage collector: a summary or a patient page parses a few thousand resources
into many small containers (no reference cycles; reference counting frees them), and with
CPython's default thresholds (700, 10, 10) the full collections that follow scan every
object the process holds, the node's own long-lived ones included (search registry,
R4B models, compiled expressions). Measured (bench/viewer_page.py, PostgreSQL, 2,000-resource
patient, idle machine): p50 159 / p95 400 ms with the defaults, 154 / 187 ms with
:func:`tune_gc`, 165 / 187 ms with the collector off. So a serving process, once built,
moves what it holds into the permanent generation (``gc.freeze``: never scanned again; also
keeps forked workers' pages shared) and collects the young generation less often. Cycles
are still collected; nothing is switched off.
"""

from __future__ import annotations

import gc

#: gen0 allocations before a young collection; survivals before gen1 / gen2 collections.
GC_THRESHOLDS = (10_000, 20, 20)


def tune_gc() -> None:
    """Freeze what the process holds now and raise the collection thresholds. Call once,
    after the process has built its long-lived state (the node and its app)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
