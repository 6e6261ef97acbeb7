"""What activities return: the one ``Result`` alias, used by every probe and action."""

from __future__ import annotations

from typing import Any, Dict  # noqa: UP035 - chaos discover types only typing.Dict as "mapping"

Result = Dict[str, Any]  # noqa: UP006
"""What every activity returns: a JSON-serialisable mapping (``chaos discover`` shows it as
"mapping"; ``dict[str, Any]`` would show as "object")."""

JSON = Any
"""A value ``json.dumps`` accepts."""
