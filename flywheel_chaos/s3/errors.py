"""The small vocabulary of ways a state authority check fails.

Every failure raised by a probe is an :class:`StateAuthorityError` (a Chaos
Toolkit ``ActivityFailed``) whose message reads
``<class>: <S3 error code>: <what happened> (hint: <what to do>)`` so that
journals, evidence and operators can group failures without parsing prose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, TypedDict, cast, get_args

import botocore.exceptions
from chaoslib.exceptions import ActivityFailed

from flywheel_chaos.errors import EXIT_FAILED

if TYPE_CHECKING:
    from flywheel_chaos.s3.authority import StateAuthority

__all__ = [
    "ERROR_CLASSES",
    "ErrorClass",
    "ErrorRecord",
    "StateAuthorityError",
    "classify",
    "error_class",
]

ErrorClass = Literal[
    "endpoint-unreachable",
    "unavailable",
    "timeout",
    "no-such-bucket",
    "no-such-key",
    "access-denied",
    "lock-not-exclusive",
    "integrity-mismatch",
    "versioning-disabled",
    "not-stable",
    "other",
]

ERROR_CLASSES: Final[tuple[str, ...]] = get_args(ErrorClass)

ErrorRecord = TypedDict(
    "ErrorRecord", {"class": str, "code": str, "message": str, "detail": str, "hint": str}
)
"""How a failure is recorded (:meth:`StateAuthorityError.as_dict`)."""


def error_class(name: str) -> ErrorClass:
    """``name`` as an :data:`ErrorClass` (``other`` when it is none of them)."""
    return cast(ErrorClass, name) if name in ERROR_CLASSES else "other"


_HINTS: Final[dict[str, str]] = {
    "endpoint-unreachable": "is the S3 server running and AWS_ENDPOINT_URL_S3 right?",
    "unavailable": "the server answered that it cannot serve now (503: below its erasure quorum, starting, or overloaded); see its readiness endpoint (RustFS: /health/ready)",
    "timeout": "the endpoint accepted the connection but did not answer in time; check the server's health",
    "no-such-bucket": "check TOFU_STATE_BUCKET; if the bucket exists on disk, the server lost its bucket index (the RustFS incident)",
    "no-such-key": "check TOFU_STATE_KEY; a missing state key means tofu would see an empty state",
    "access-denied": "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the identity's permissions",
    "lock-not-exclusive": "the server ignores If-None-Match: OpenTofu's use_lockfile cannot protect state here",
    "integrity-mismatch": "the server returned different bytes than were written",
    "versioning-disabled": "enable versioning on the state bucket before trusting it with state",
    "not-stable": "the server answers some requests and fails others; raise within_s, or look at which member still fails",
    "other": "see the S3 error code; run with --debug for details",
}

_ACCESS_CODES: Final[frozenset[str]] = frozenset(
    {
        "AccessDenied",
        "403",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AuthorizationHeaderMalformed",
        "AllAccessDisabled",
    }
)


class StateAuthorityError(ActivityFailed):  # type: ignore[misc]
    """A classified state-authority failure; ``str()`` is the one-line message (exit 1)."""

    exit_code = EXIT_FAILED

    def __init__(self, error_class: ErrorClass, code: str, detail: str, hint: str = "") -> None:
        self.error_class = error_class
        self.code = code or "-"
        self.detail = detail
        self.hint = hint or _HINTS.get(error_class, _HINTS["other"])
        super().__init__(f"{error_class}: {self.code}: {detail} (hint: {self.hint})")

    def with_note(self, note: str) -> StateAuthorityError:
        """The same failure with ``note`` appended to its detail."""
        return StateAuthorityError(self.error_class, self.code, f"{self.detail}; {note}", self.hint)

    def as_dict(self) -> ErrorRecord:
        """JSON-serialisable form: class, code and message."""
        return {
            "class": self.error_class,
            "code": self.code,
            "message": str(self),
            "detail": self.detail,
            "hint": self.hint,
        }


def classify(
    exc: BaseException, authority: StateAuthority | None = None, subject: str = ""
) -> StateAuthorityError:
    """Map a botocore exception to the failure vocabulary."""
    where = authority.endpoint if authority is not None else "the endpoint"
    what = f" ({subject})" if subject else ""
    if isinstance(exc, StateAuthorityError):
        return exc
    if isinstance(
        exc,
        botocore.exceptions.ReadTimeoutError | botocore.exceptions.ConnectTimeoutError,
    ):
        name = type(exc).__name__
        return StateAuthorityError("timeout", name, f"no answer from {where}{what} in time")
    if isinstance(
        exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectionClosedError
    ):
        return StateAuthorityError(
            "endpoint-unreachable", type(exc).__name__, f"cannot connect to {where}{what}"
        )
    if isinstance(
        exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return StateAuthorityError(
            "access-denied", type(exc).__name__, "no usable credentials were found"
        )
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(
            error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        )
        message = str(error.get("Message") or "")
        op = getattr(exc, "operation_name", "")
        detail = f"{op} failed{what}" + (f": {message}" if message else "")
        if code == "NoSuchBucket":
            return StateAuthorityError("no-such-bucket", code, detail)
        if code in {"NoSuchKey", "NoSuchVersion"}:
            return StateAuthorityError("no-such-key", code, detail)
        if code == "404":
            if op == "HeadBucket":
                return StateAuthorityError("no-such-bucket", code, detail)
            return StateAuthorityError("no-such-key", code, detail)
        if code in _ACCESS_CODES:
            return StateAuthorityError("access-denied", code, detail)
        if code in {"RequestTimeout", "RequestTimeoutException"}:
            return StateAuthorityError("timeout", code, detail)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in {"ServiceUnavailable", "503", "SlowDown"} or status == 503:
            # a server below quorum says so (RustFS: 503 with Retry-After): it is not the
            # state that is gone, unlike a phantom NoSuchKey
            headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
            retry = headers.get("retry-after")
            return StateAuthorityError(
                "unavailable", code, detail + (f" (Retry-After: {retry})" if retry else "")
            )
        return StateAuthorityError("other", code, detail)
    if isinstance(exc, botocore.exceptions.HTTPClientError):
        return StateAuthorityError(
            "endpoint-unreachable", type(exc).__name__, f"connection to {where} failed{what}: {exc}"
        )
    return StateAuthorityError("other", type(exc).__name__, f"{exc}{what}")
