"""The Kubernetes client, imported by what is used rather than all of it at once.

``import kubernetes`` executes ``kubernetes/__init__.py``, which imports the whole client:
every API group (``kubernetes.client.api``), every one of its ~800 models
(``kubernetes.client.models``), the dynamic client, the informers and the leader election.
On this project's machines that is 0.3 s of a 0.45 s import of the drain, i.e. a quarter of
a drain that takes 1.3 s with kubectl. A drain uses three API classes and a dozen models.

:func:`install` puts lazy stand-ins for those packages in ``sys.modules`` (SPEC 1's lazy
loading, as scientific Python does it): each is the real package (its ``__path__``, so every
submodule imports from the installed files as usual) whose names are resolved on first use
from the ``from X import Y`` lines of its own ``__init__.py``. ``client.CoreV1Api`` imports
``kubernetes.client.api.core_v1_api`` and nothing else; ``api_client`` deserialising a
``V1Node`` imports ``kubernetes.client.models.v1_node``. What the client does is unchanged:
the same classes from the same files.

It only ever runs before the first ``import kubernetes`` of a process (an already imported
client is left as it is) and installs nothing when an ``__init__.py`` does not read as
expected (another client version): then the import is the usual, eager one.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
import types
from pathlib import Path
from typing import Any, Final

PACKAGES: Final = (
    "kubernetes",
    "kubernetes.client",
    "kubernetes.client.api",
    "kubernetes.client.models",
)
"""The packages whose ``__init__`` imports everything below it (outermost first)."""

_FROM_IMPORT: Final = re.compile(r"^from\s+([\w.]+)\s+import\s+(\w+)\s*$", re.MULTILINE)
_RELATIVE_IMPORT: Final = re.compile(r"^from\s+\.\s+import\s+(\w+)\s*$", re.MULTILINE)
_VERSION: Final = re.compile(r'^__version__\s*=\s*"([^"]+)"', re.MULTILINE)


class _LazyPackage(types.ModuleType):
    """A package whose names are imported when first read."""

    def __init__(self, name: str, directory: Path, names: dict[str, str], version: str) -> None:
        super().__init__(name)
        self.__path__ = [str(directory)]
        self.__file__ = str(directory / "__init__.py")
        self.__package__ = name
        self.__version__ = version
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(directory)]
        self.__spec__ = spec
        self._names = names

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        module = self._names.get(attribute)
        if module is None:  # a submodule (kubernetes.client.rest) or a missing name
            try:
                found = importlib.import_module(f"{self.__name__}.{attribute}")
            except ModuleNotFoundError:
                raise AttributeError(
                    f"module {self.__name__!r} has no attribute {attribute!r}"
                ) from None
        else:
            found = getattr(importlib.import_module(module), attribute)
        setattr(self, attribute, found)
        return found

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._names})


def _names(package: str, source: str) -> dict[str, str]:
    """``name -> module`` from an ``__init__.py``'s ``from X import Y`` lines."""
    names = {
        name: module for module, name in _FROM_IMPORT.findall(source) if module != "__future__"
    }
    names.update((name, f"{package}.{name}") for name in _RELATIVE_IMPORT.findall(source))
    return names


def install() -> bool:
    """Make ``import kubernetes`` lazy for this process; whether it did (see the module)."""
    if any(name in sys.modules for name in PACKAGES):
        return False
    spec = importlib.util.find_spec("kubernetes")
    if spec is None or not spec.submodule_search_locations:
        return False
    root = Path(next(iter(spec.submodule_search_locations)))
    packages: list[_LazyPackage] = []
    for package in PACKAGES:
        directory = root.joinpath(*package.split(".")[1:])
        try:
            source = (directory / "__init__.py").read_text(encoding="utf-8")
        except OSError:
            return False
        names = _names(package, source)
        version = _VERSION.search(source)
        if not names:
            return False
        packages.append(
            _LazyPackage(package, directory, names, version.group(1) if version else "")
        )
    by_name = {module.__name__: module for module in packages}
    for module in packages:
        sys.modules[module.__name__] = module
        parent, _, child = module.__name__.rpartition(".")
        if parent:
            setattr(by_name[parent], child, module)
    return True
