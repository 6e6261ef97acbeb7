"""What a state authority is: endpoint, bucket, protected key, time bounds and retry policy.

Plain data shared by the client (:mod:`probes.s3client`) and the failure
vocabulary (:mod:`probes.failures`); it imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

__all__: list[str] = []  # helpers, not activities

CANARY_PREFIX = "_flywheel-chaos/"
DEFAULT_BUCKET = "tofu-state"
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried: data, not code."""

    attempts: int = 3
    first_delay_s: float = 0.1
    factor: float = 2.0
    max_delay_s: float = 1.0

    def delay(self, attempt: int) -> float:
        """Delay after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_delay_s, self.first_delay_s * self.factor ** (attempt - 1)))


@dataclass(frozen=True)
class StateAuthority:
    """One S3 state authority: endpoint, bucket, protected key and time bounds."""

    endpoint: str
    bucket: str = DEFAULT_BUCKET
    key: str = ""
    region: str = DEFAULT_REGION
    path_style: bool = True
    timeout_s: float = 5.0
    connect_timeout_s: float = 1.0
    read_timeout_s: float = 2.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)

    def with_overrides(self, **changes: Any) -> StateAuthority:
        """A copy with the non-empty values of ``changes`` applied."""
        kept = {k: v for k, v in changes.items() if v not in (None, "")}
        return replace(self, **kept)

    @property
    def attempt_budget_s(self) -> float:
        """The longest one attempt can take."""
        return self.connect_timeout_s + self.read_timeout_s
