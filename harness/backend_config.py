"""Read an OpenTofu S3 backend configuration so the guard checks what tofu uses.

Accepts either a ``-backend-config`` file (flat ``name = value`` lines) or a
``.tf`` file holding ``terraform { backend "s3" { ... } }``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError


@dataclass(frozen=True)
class BackendSettings:
    """The S3 backend settings the guard needs."""

    bucket: str = ""
    key: str = ""
    region: str = ""
    endpoint: str = ""
    path_style: bool | None = None
    use_lockfile: bool | None = None


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _text(settings: dict[str, Any], name: str, path: Path) -> str:
    value = _unquote(settings.get(name, ""))
    if value in (None, ""):
        return ""
    if not isinstance(value, str):
        raise ConfigError(
            f"{path}: {name} must be a string, got {type(value).__name__}",
            'write it as name = "value"',
        )
    if "${" in value:
        raise ConfigError(
            f"{path}: {name} uses an interpolation ({value})",
            "the guard reads literal values only; pass the resolved value with a flag",
        )
    return value


def _flag(settings: dict[str, Any], name: str) -> bool | None:
    value = _unquote(settings.get(name))
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    return str(value).lower() == "true"


def _backend_block(document: dict[str, Any]) -> dict[str, Any] | None:
    for terraform in document.get("terraform", []):
        for backend in terraform.get("backend", []):
            for name, body in backend.items():
                if _unquote(name) == "s3":
                    return dict(body)
                raise ConfigError(
                    f'backend is {_unquote(name)!r}, not "s3"',
                    "the guard checks S3 state authorities only",
                )
    return None


def read_backend_config(path: Path) -> BackendSettings:
    """Parse ``path``; raises :class:`ConfigError` naming the file and the cause."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"backend config {path} does not exist", "check the path") from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot read backend config {path}: {exc.strerror}", "check permissions"
        ) from exc
    import hcl2  # here, not at the top: parsing HCL is the one thing that needs it (30 ms)

    try:
        document: dict[str, Any] = hcl2.loads(text)
    except Exception as exc:  # hcl2 raises lark errors of several kinds
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"backend config {path} is not valid HCL: {first}",
            'it should hold name = "value" lines or a terraform { backend "s3" { ... } } block',
        ) from exc
    settings = _backend_block(document) or document
    endpoints = settings.get("endpoints")
    endpoint = ""
    if isinstance(endpoints, dict):
        endpoint = _text(endpoints, "s3", path)
    elif isinstance(endpoints, list) and endpoints and isinstance(endpoints[0], dict):
        endpoint = _text(endpoints[0], "s3", path)
    endpoint = endpoint or _text(settings, "endpoint", path)
    path_style = _flag(settings, "use_path_style")
    if path_style is None:
        path_style = _flag(settings, "force_path_style")
    result = BackendSettings(
        bucket=_text(settings, "bucket", path),
        key=_text(settings, "key", path),
        region=_text(settings, "region", path),
        endpoint=endpoint,
        path_style=path_style,
        use_lockfile=_flag(settings, "use_lockfile"),
    )
    if not (result.bucket or result.key or result.endpoint):
        raise ConfigError(
            f"backend config {path} sets none of bucket, key or endpoints.s3",
            "is this the S3 backend file tofu init -backend-config reads?",
        )
    return result
