"""Keeping secrets out of everything a run writes: records, journals, logs, bundles, messages.

Two rules, applied together by :class:`Redactor`:

* **known values**: one list of secret values gathered from every place a
  secret can come from: a pod's service account token, the environment (the AWS variables and any variable
  whose name looks secret), the experiment's resolved ``secrets`` block, the
  credentials in boto's shared files (every profile of ``~/.aws/credentials``
  and ``~/.aws/config``; read from the files, never from a network provider),
  and the credentials in the kubeconfig (tokens, passwords, client keys).
  Each occurrence inside any string is replaced by ``***``.
* **names and shapes**: a value under a key that looks secret (``secret``,
  ``password``, ``token``, ``credentials``, ``private-key``,
  ``client-key-data``, ``apikey``, ...) is replaced whole, whatever its type
  (a mapping or list under such a key goes entirely); the user-info part of a
  URL (``https://AKIA..:pw@host``) is replaced in every string.

Values shorter than :data:`MIN_SECRET_LENGTH` are not searched for (they
would mangle ordinary text); they still go when they sit under a secret key.
"""

from __future__ import annotations

import configparser
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

REDACTED = "***"
MIN_SECRET_LENGTH = 4

SECRET_KEY = re.compile(
    r"secret|passw(or)?d|passwd|token|credential|private[-_ ]?key|api[-_ ]?key|"
    r"access[-_ ]?key|client[-_ ]?key|auth[-_ ]?header|authorization|cookie",
    re.I,
)
"""Key names whose values are secret, whatever the value is."""

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@'\"<>]+@")
_AUTH_HEADER = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]+")
_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "FLYWHEEL_NOTIFY_URL",  # a webhook URL carries its own token
)
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
"""In a pod: the projected service account token in-cluster configuration uses."""


def _leaves(value: Any, strings_only: bool = False) -> Iterable[str]:
    """Every scalar leaf of ``value`` as text (flags and nulls aside), or its strings only."""
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item, strings_only)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item, strings_only)
    elif isinstance(value, str) or (
        not strings_only and value is not None and not isinstance(value, bool)
    ):
        yield str(value)


REFERENCE_FIELDS = frozenset(
    {
        "serviceAccountToken",  # a projected token *request*: audience, expirationSeconds, path
        "automountServiceAccountToken",
        "tokenRequests",
        "secretName",
        "secretRef",
        "secretKeyRef",
        "imagePullSecrets",
    }
)
"""Kubernetes fields whose names look secret but which name or configure one: replaced in
place like any secret-named field, but what they hold is never learnt as a secret value to
search for elsewhere (the default projected token's ``expirationSeconds: 3607`` and its
``path: token`` would otherwise mask every "3607" inside a SHA-256 and every word "token")."""


def _secret_leaves(value: Any, key: str = "") -> Iterable[str]:
    """String leaves under secret-looking keys, anywhere in ``value`` (what a document teaches
    the redactor; numbers and booleans there are replaced in place, never searched for)."""
    if isinstance(value, Mapping):
        for name, item in value.items():
            if str(name) in REFERENCE_FIELDS:
                continue
            if SECRET_KEY.search(str(name)):
                yield from _leaves(item, strings_only=True)
            else:
                yield from _secret_leaves(item, str(name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secret_leaves(item, key)


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    values = [env.get(name, "") for name in _SECRET_ENV]
    values += [v for k, v in env.items() if SECRET_KEY.search(k) and not k.endswith("_FILE")]
    return values


def boto_profile_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Secret values in boto's shared credentials and config files, every profile."""
    env = os.environ if environ is None else environ
    files = [
        env.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials",
        env.get("AWS_CONFIG_FILE") or "~/.aws/config",
    ]
    values: list[str] = []
    for name in files:
        path = Path(name).expanduser()
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except (OSError, configparser.Error):
            continue
        for section in parser.sections():
            for key, value in parser.items(section):
                if SECRET_KEY.search(key):
                    values.append(value)
    return values


def kubeconfig_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Tokens, passwords and client keys of every user in the kubeconfig file(s)."""
    env = os.environ if environ is None else environ
    raw = env.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    values: list[str] = []
    for name in raw.split(os.pathsep):
        try:
            document = yaml.safe_load(Path(name).read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(document, Mapping):
            values += list(_secret_leaves(document.get("users") or []))
    return values


def known_secrets(
    secrets: Mapping[str, Any] | None = None,
    extra: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """Every known secret value, longest first (so that no part of one survives another)."""
    try:
        in_pod = [SERVICE_ACCOUNT_TOKEN.read_text().strip()]
    except OSError:
        in_pod = []
    values = [
        *in_pod,
        *environment_secrets(environ),
        *boto_profile_secrets(environ),
        *kubeconfig_secrets(environ),
        *(_leaves(secrets) if secrets else ()),
        *extra,
    ]
    unique = {v for v in values if v and len(v) >= MIN_SECRET_LENGTH}
    return sorted(unique, key=len, reverse=True)


class Redactor:
    """Replaces known secret values, secret-named fields and URL user-info, recursively."""

    def __init__(self, values: Iterable[str]) -> None:
        self.values = sorted(
            {v for v in values if v and len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True
        )

    @classmethod
    def from_context(
        cls, secrets: Mapping[str, Any] | None = None, extra: Iterable[str] = ()
    ) -> Redactor:
        return cls(known_secrets(secrets, extra))

    def learn(self, values: Iterable[str]) -> None:
        """Add secret values (e.g. ones found under secret-named keys) to the known list."""
        new = {v for v in values if v and len(v) >= MIN_SECRET_LENGTH} - set(self.values)
        if new:
            self.values = sorted({*self.values, *new}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.values:
            if secret in value:
                value = value.replace(secret, REDACTED)
        value = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", value)
        return _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{REDACTED}", value)

    def document(self, value: Any) -> Any:
        """A copy of ``value`` with every secret gone (mappings, lists, any scalar).

        Values found under secret-named keys anywhere in ``value`` are learnt
        first, so that a copy of one inside some other string goes too.
        """
        self.learn(_secret_leaves(value))
        return self._walk(value)

    def _walk(self, value: Any, key: str = "") -> Any:
        if key and SECRET_KEY.search(key) and value not in (None, "", [], {}):
            if isinstance(value, Mapping):
                return {k: REDACTED for k in value}
            return REDACTED
        if isinstance(value, Mapping):
            return {k: self._walk(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(v, key) for v in value]
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, bool | int | float):
            if not isinstance(value, bool) and value is not None and str(value) in self.values:
                return REDACTED
            return value
        return self.text(str(value))


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (arguments and exception included)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self.redactor.text(message)
        record.args = None
        if record.exc_text:
            record.exc_text = self.redactor.text(record.exc_text)
        return True
