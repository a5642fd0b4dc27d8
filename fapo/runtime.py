"""Context variables that let the engine tell model calls which repeat/sample they belong to.

The simulated model and the call cache both read these, so a repeat index changes the cache key
and the sim's seeded noise, while the same index always reproduces the same output.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

#: Repeat index of the current evaluation of an example (0 unless `repeats > 1`).
REPEAT: ContextVar[int] = ContextVar("fapo_repeat", default=0)
#: Sample index inside one node (majority-vote transform draws samples 0..N-1).
SAMPLE: ContextVar[int] = ContextVar("fapo_sample", default=0)
#: Sampling seed of the task model for this whole run (0 by default). `--trials` gives trial i its
#: own value so a noisy model samples independently per trial; the simulator folds it into its
#: noise, so at temperature 0 it changes nothing (and a real provider's cache is per trial anyway).
MODEL_SEED: ContextVar[int] = ContextVar("fapo_model_seed", default=0)
#: Recorder of the example being evaluated (set by the engine; None outside an evaluation).
RECORDER: ContextVar[Any] = ContextVar("fapo_recorder", default=None)


def seed_offset() -> int:
    """A single integer combining model seed, repeat and sample, for seeded randomness in models."""
    return MODEL_SEED.get() * 1_000_000 + REPEAT.get() * 1000 + SAMPLE.get()
