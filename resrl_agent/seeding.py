"""One seed in the config seeds Python, NumPy, torch and env sampling (derived seeds for everything else)."""

from __future__ import annotations

import hashlib
import random

import numpy as np

__all__ = ["derive_seed", "seed_everything"]


def derive_seed(base: int, *parts: object) -> int:
    """A stable 31-bit seed for a sub-stream (an iteration, a group, a worker), independent of PYTHONHASHSEED."""
    digest = hashlib.blake2b(repr((base, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (2**31 - 1)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (torch only when it is installed)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch
    except ImportError:  # the torch-free core (env servers) has nothing more to seed
        return
    torch.manual_seed(seed)
