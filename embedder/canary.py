"""The canary vectors of a task: the run's canary texts embedded by the task's own encoder.

Each text goes through the model alone (a batch of one: no padding, no neighbours), so the vectors
depend only on the weights, the device, its kernels and the compute dtype. Shards computed on the
same kind of hardware get bitwise-equal canaries; the merge compares them (merge/canary.py).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)


def embed_canary(encoder, texts: Sequence[str]) -> np.ndarray | None:
    """float32 [len(texts), dim]: each canary text encoded alone; None without canary texts.

    The encoder's counters (tokens, truncated rows) are left as they were: canaries are not corpus rows.
    """
    if not texts:
        return None
    counters = dataclasses.replace(encoder.counters)
    try:
        vectors = np.concatenate([encoder.encode([text]) for text in texts]).astype(np.float32, copy=False)
    finally:
        encoder.counters = counters
    log.info("canary: %d texts embedded, one per forward pass", len(texts))
    return vectors
