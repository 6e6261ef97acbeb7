"""The lazily imported Kubernetes client is the same client, loaded by what is used."""

from __future__ import annotations

import json
import subprocess
import sys

PUBLIC_NAMES = """
import json, sys, types
{setup}
from kubernetes import client
names = {{}}
for name in {names}:
    value = getattr(client, name)
    module = isinstance(value, types.ModuleType)
    names[name] = value.__name__ if module else getattr(value, "__module__", repr(value))
print(json.dumps({{"lazy": type(sys.modules["kubernetes"]).__name__, "names": names}}))
"""

EAGER_NAMES = """
import json
import kubernetes.client as client
import __future__
features = set(__future__.all_feature_names)  # "from __future__ import absolute_import"
print(json.dumps(sorted(n for n in vars(client) if not n.startswith("_") and n not in features)))
"""


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_name_of_the_eager_client_resolves_to_the_same_module_in_the_lazy_one() -> None:
    eager_names = json.loads(_python(EAGER_NAMES))
    assert "CoreV1Api" in eager_names and "V1Node" in eager_names
    eager = json.loads(_python(PUBLIC_NAMES.format(setup="import kubernetes", names=eager_names)))
    lazy = json.loads(
        _python(PUBLIC_NAMES.format(setup="import flywheel_chaos", names=eager_names))
    )
    assert eager["lazy"] == "module"
    assert lazy["lazy"] == "_LazyPackage"
    assert lazy["names"] == eager["names"]


def test_a_drain_s_imports_load_no_model_until_a_response_is_read_and_then_only_its_own() -> None:
    out = _python(
        """
import json, sys
import actions.nodes, harness.controls.lease
from kubernetes.client import ApiClient
models = lambda: sorted(m for m in sys.modules if m.startswith("kubernetes.client.models."))
apis = lambda: sorted(m for m in sys.modules if m.startswith("kubernetes.client.api."))
before = models()
class Response:
    data = json.dumps({"items": [{"metadata": {"name": "bumble"},
                                   "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}]})
nodes = ApiClient().deserialize(Response(), "V1NodeList")
print(json.dumps({"before": before, "after": models(), "apis": apis(),
                  "taint": nodes.items[0].spec.taints[0].key}))
"""
    )
    seen = json.loads(out)
    assert seen["before"] == []
    assert seen["taint"] == "k"
    assert "kubernetes.client.models.v1_taint" in seen["after"]
    assert len(seen["after"]) < 12, seen["after"]
    assert len(seen["apis"]) < 10, seen["apis"]


def test_a_client_imported_before_flywheel_chaos_is_left_eager() -> None:
    out = _python(
        "import kubernetes, sys\n"
        "from flywheel_chaos.kube import lazy\n"
        "print(lazy.install(), type(sys.modules['kubernetes']).__name__)"
    )
    assert out.split() == ["False", "module"]
