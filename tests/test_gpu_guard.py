"""The GPU check's bundle and guard: the wheels file is complete, and what is missing is said in one line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_guard  # noqa: E402

PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)\s+(carry|have)\b")


def pins() -> dict[str, tuple[str, str]]:
    """benchmarks/gpu_wheels.txt as {name: (version, where)}; every non-comment line must be a pin."""
    found = {}
    for line in (ROOT / "benchmarks" / "gpu_wheels.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"not a pin with its marker: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in found, f"{name} is pinned twice"
        found[name] = (match.group(2), match.group(3))
    return found


def test_every_package_the_check_needs_beyond_torch_transformers_and_peft_is_pinned():
    """A new dependency of peftbench (or of what it needs) must reach the GPU machine too."""
    needed = set(gpu_guard.requirements_closure())
    provided = {"torch", "transformers", "peft"}
    for name in ("torch", "transformers", "peft"):
        provided |= set(gpu_guard.requirements_closure(name, ()))
    missing = sorted(needed - provided - set(pins()))
    assert not missing, f"add to benchmarks/gpu_wheels.txt: {missing}"


def test_what_the_gpu_machine_lacks_is_carried():
    carried = {name for name, (_, where) in pins().items() if where == "carry"}
    assert {"pydantic", "pydantic-core", "datasets", "evaluate", "dill", "multiprocess"} <= carried
    assert not {"torch", "transformers", "peft"} & set(pins())  # the machine's own are used


@pytest.fixture
def fake_machine(monkeypatch):
    """Installed distributions as the guard sees them: {name: (version, [requirements])}."""
    machine = {}

    def requires(name):
        return machine[name][1] if name in machine else None

    def version(name):
        if name not in machine:
            raise gpu_guard.metadata.PackageNotFoundError(name)
        return machine[name][0]

    monkeypatch.setattr(gpu_guard.metadata, "requires", requires)
    monkeypatch.setattr(gpu_guard.metadata, "version", version)
    return machine


def test_a_version_too_old_for_its_requirer_is_one_line_saying_what_to_do(fake_machine):
    fake_machine.update(
        peftbench=("0.3.0", ["datasets>=3.0", 'pytest>=8; extra == "dev"', 'ray; extra == "ray"']),
        datasets=("5.0.0", ["pyarrow>=21.0.0"]),
        pyarrow=("19.0.1", []),
        pytest=("9.0", []),
    )
    with pytest.raises(gpu_guard.Missing) as missing:
        gpu_guard.requirements_closure()
    assert str(missing.value).startswith("datasets needs pyarrow>=21.0.0 but this machine has pyarrow 19.0.1")
    assert "gpu_wheels.txt" in str(missing.value)


def test_a_package_not_installed_is_named_with_its_requirer(fake_machine):
    fake_machine.update(peftbench=("0.3.0", ["pydantic>=2.6"]))
    with pytest.raises(
        gpu_guard.Missing, match=r"^pydantic is not installed \(peftbench needs pydantic>=2.6\)"
    ):
        gpu_guard.requirements_closure()


def test_extras_not_asked_for_are_not_required(fake_machine):
    fake_machine.update(peftbench=("0.3.0", ['ray>=2.10; extra == "ray"', 'ruff; extra == "dev"']))
    assert gpu_guard.requirements_closure() == {}


def test_pip_check_keeps_only_complaints_about_what_peftbench_needs(monkeypatch):
    output = (
        "torch-geometric 2.8.0 requires aiohttp, which is not installed.\n"
        "datasets 5.0.0 has requirement fsspec<=2026.4.0, but you have fsspec 2026.9.0.\n"
    )
    monkeypatch.setattr(
        gpu_guard.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, output, "")
    )
    assert gpu_guard.pip_check({"datasets", "fsspec"}) == [
        "datasets 5.0.0 has requirement fsspec<=2026.4.0, but you have fsspec 2026.9.0."
    ]


def test_a_bundle_gathered_for_another_pyproject_is_refused(tmp_path: Path):
    (tmp_path / "MANIFEST").write_text("target: gpu\npyproject: 0123456789abcdef\n")
    with pytest.raises(gpu_guard.Missing, match="another pyproject.toml: rerun benchmarks/gpu_prepare.sh"):
        gpu_guard.check_bundle(tmp_path)


@pytest.mark.slow  # imports the whole stack and runs pip check; CI's rehearsal runs it for real
def test_the_guard_passes_here_and_says_so_in_one_line(mirror_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_guard.py")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("guard: ready, Python ")
