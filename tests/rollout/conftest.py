"""Rollout tests run torch on one thread: on a shared 2-core box two threads are often 10-80x slower."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
