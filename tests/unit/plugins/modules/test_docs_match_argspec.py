"""Every module's DOCUMENTATION (with its doc fragments) says what its argument spec accepts.

The check ``ansible-test sanity --test validate-modules`` makes, for the parts that matter to a
user reading ``ansible-doc``: names, type, elements, required, default, choices, suboptions,
and EXAMPLES/RETURN present. (ansible-test itself needs network access for its virtualenvs.)
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[4]
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))


def documented_options(module) -> dict:
    doc = yaml.safe_load(module.DOCUMENTATION)
    options = dict(doc.get("options") or {})
    for fragment in doc.get("extends_documentation_fragment") or []:
        namespace, collection, name = fragment.split(".", 2)
        assert (namespace, collection) == ("sre", "rollout"), f"unexpected fragment {fragment}"
        frag = importlib.import_module(f"ansible_collections.sre.rollout.plugins.doc_fragments.{name}")
        shared = yaml.safe_load(frag.ModuleDocFragment.DOCUMENTATION)["options"]
        overlap = set(shared) & set(options)
        assert not overlap, f"{module.__name__} documents {overlap} itself and in the fragment {fragment}"
        options.update(shared)
    return options


def compare(where: str, docs: dict, spec: dict) -> list[str]:
    problems = []
    if set(docs) != set(spec):
        problems.append(f"{where}: documented only {sorted(set(docs) - set(spec))}, "
                        f"in the spec only {sorted(set(spec) - set(docs))}")
    for name in sorted(set(docs) & set(spec)):
        d, s = docs[name], spec[name]
        for key, default in (("type", "str"), ("elements", None), ("required", False), ("default", None),
                             ("choices", None)):
            if d.get(key, default) != s.get(key, default):
                problems.append(f"{where}.{name}: {key} documented {d.get(key, default)!r}, "
                                f"spec {s.get(key, default)!r}")
        if d.get("suboptions") or s.get("options"):
            problems += compare(f"{where}.{name}", d.get("suboptions") or {}, s.get("options") or {})
        if not d.get("description"):
            problems.append(f"{where}.{name}: no description")
    return problems


@pytest.mark.parametrize("name", MODULES)
def test_documentation_matches_the_argument_spec(name):
    module = importlib.import_module(f"ansible_collections.sre.rollout.plugins.modules.{name}")
    assert yaml.safe_load(module.EXAMPLES), f"{name} has no EXAMPLES"
    assert yaml.safe_load(module.RETURN) is not None, f"{name} has no RETURN"
    assert compare(name, documented_options(module), module.ARGUMENT_SPEC) == []


def test_every_module_is_checked():
    assert {"lb_member", "lb_pool_info", "alertmanager_silence", "app_release", "wait_healthy",
            "release_plan", "canary_analysis", "cmdb_hosts", "alertmanager_info",
            "prometheus_info"} <= set(MODULES)
