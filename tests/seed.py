"""The one seed every training-outcome test and fixture draws from: ``LOOPGATE_TEST_SEED`` (default 0).

Tiny-model training outcomes move between machines (kernels sum in different orders), so a test that only
holds for one seed on one machine is a test of that machine. Run the training tests with seeds 0, 1 and 2;
fixtures that need several independent draws (two different inits) use ``SEED``, ``SEED + 1``, ….
"""

from __future__ import annotations

import os


def _read_seed() -> int:
    raw = os.environ.get("LOOPGATE_TEST_SEED", "0").strip() or "0"
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"LOOPGATE_TEST_SEED must be a whole number, not {raw!r}") from None


SEED = _read_seed()
