"""Deterministic retry delays: exponential backoff with jitter derived from a seed.

The seed comes from the workflow id and is recorded in ``WorkflowStarted``; the
jitter of (step, attempt) is a hash of (seed, step key, attempt), so replay gives
the same delay without any global random state.
"""

from __future__ import annotations

import hashlib

from kflow.core.definition import RetryPolicy


def seed_for(workflow_id: str) -> int:
    """A 63-bit seed from the workflow id (SHA-256, so the same on every machine)."""
    digest = hashlib.sha256(workflow_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def unit_fraction(seed: int, key: str, attempt: int) -> float:
    """A number in [0, 1) that only depends on its arguments."""
    digest = hashlib.sha256(f"{seed}:{key}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def retry_delay_ms(policy: RetryPolicy, seed: int, key: str, failed_attempt: int) -> int:
    """Delay before attempt ``failed_attempt + 1``: min(max, initial*mult^(n-1)) ± jitter."""
    base = policy.initial_delay_ms * policy.multiplier ** (failed_attempt - 1)
    base = min(float(policy.max_delay_ms), base)
    spread = policy.jitter * (2.0 * unit_fraction(seed, key, failed_attempt) - 1.0)
    return max(0, min(policy.max_delay_ms, round(base * (1.0 + spread))))
