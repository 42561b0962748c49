"""The documentation: every public name and every hook has its entry in the API reference."""

from __future__ import annotations

import re

import peftbench
from conftest import ROOT
from peftbench import hookspecs

API = (ROOT / "docs" / "api.md").read_text()
DOCUMENTED = set(re.findall(r"^::: (\S+)$", API, re.M))


def hook_names() -> list[str]:
    return [name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "peftbench_spec")]


def test_every_public_name_is_in_the_api_reference():
    missing = [name for name in peftbench.__all__ if f"peftbench.{name}" not in DOCUMENTED]
    assert not missing, f"add '::: peftbench.<name>' to docs/api.md for: {', '.join(missing)}"


def test_every_hook_is_in_the_api_reference_with_a_docstring():
    assert hook_names() == ["register_methods", "register_tasks"]  # the contract the guide describes
    for name in hook_names():
        assert f"peftbench.hookspecs.{name}" in DOCUMENTED, f"hook {name} is not in docs/api.md"
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"hook {name} has no docstring"


def test_every_documented_name_exists():
    for dotted in DOCUMENTED:
        module, _, attribute = dotted.rpartition(".")
        target = __import__(module, fromlist=[attribute])
        assert hasattr(target, attribute), f"docs/api.md documents {dotted}, which does not exist"
