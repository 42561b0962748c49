"""Before the GPU check spends its minutes: can everything it needs be imported, at versions we accept?

Reads peftbench's own requirements (its installed metadata: the base ones and the ``dev`` extra's,
the linter aside), follows them to everything they need, and checks that each is installed at a
version its requirer accepts and that it imports; then runs ``pip check`` and keeps what concerns
those packages (the machine's unrelated packages may disagree among themselves: not our business);
then checks the mirror files and, with a bundle, that it was gathered for this pyproject. Prints one
line: what is there, or the first thing missing and what to do. Exit status 0 or 3.

    python3 benchmarks/gpu_guard.py [--bundle .gpu-bundle]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata as metadata
import os
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the engines module the check imports
SKIPPED = {"ruff"}  # a dev extra the check never runs
MIRROR_FILES = ("datasets/rotten_tomatoes/train.parquet", "tokenizers/gpt2/vocab.json")
REPORTED = ("torch", "transformers", "peft", "datasets", "pydantic", "pandas", "accelerate")
PREPARE = "rerun benchmarks/gpu_prepare.sh where there is a package index and carry the bundle again"
_ADD = "pin a version that fits as carry in benchmarks/gpu_wheels.txt (or pass --also NAME==VERSION)"


class Missing(Exception):
    """Something the check needs is absent or unusable: the message says what and what to do."""


def requirements_closure(root: str = "peftbench", extras: tuple[str, ...] = ("dev",)) -> dict[str, list]:
    """Every distribution ``root`` needs (with ``extras``), transitively: name -> [(requirer, Requirement)].

    Raises ``Missing`` for the first one that is not installed or is at a version its requirer
    does not accept; a marker that does not apply here (another Python, an extra not asked for)
    is skipped."""
    needed: dict[str, list] = {}
    todo = [(root, extras)]
    seen = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if not _applies(requirement, wanted):
                continue
            key = canonicalize_name(requirement.name)
            if key in SKIPPED:
                continue
            try:
                have = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                raise Missing(
                    f"{requirement.name} is not installed ({name} needs {requirement}): {_ADD}"
                ) from None
            if requirement.specifier and not requirement.specifier.contains(have, prereleases=True):
                raise Missing(
                    f"{name} needs {requirement} but this machine has {requirement.name} {have}: {_ADD}"
                )
            needed.setdefault(key, []).append((name, requirement))
            todo.append((requirement.name, tuple(sorted(requirement.extras))))
    return needed


def direct_requirements(root: str = "peftbench", extras: tuple[str, ...] = ("dev",)) -> list[str]:
    """The distributions ``root`` itself requires (with ``extras``), as canonical names."""
    return [
        canonicalize_name(requirement.name)
        for requirement in map(Requirement, metadata.requires(root) or [])
        if _applies(requirement, extras) and canonicalize_name(requirement.name) not in SKIPPED
    ]


def _applies(requirement: Requirement, extras: tuple[str, ...]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in (*extras, ""))


def check_imports(distributions: list[str]) -> None:
    """Import what the check runs (peftbench's API, the benchmark engines) and the top-level modules
    of each distribution peftbench requires itself: a wheel built for another Python fails here."""
    modules: dict[str, list[str]] = {}
    for module, names in metadata.packages_distributions().items():
        for name in names:
            modules.setdefault(canonicalize_name(name), []).append(module)
    wanted = [(module, name) for name in distributions for module in sorted(modules.get(name, []))]
    for module, name in [*wanted, ("peftbench.api", "peftbench"), ("engines", "benchmarks")]:
        if module.startswith("_") or not module.isidentifier() and "." not in module:
            continue
        try:
            importlib.import_module(module)
        except Exception as error:  # any failure to import is the finding
            first = (str(error).splitlines() or [""])[0]
            why = f"{type(error).__name__}: {first}"
            raise Missing(f"{module} (from {name}) does not import: {why}") from None


def pip_check(distributions: set[str]) -> list[str]:
    """``pip check``'s complaints that name one of ``distributions`` (as requirer or required)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    relevant = []
    for line in lines:
        names = {canonicalize_name(word) for word in re.findall(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)}
        if names & distributions and not line.startswith("No broken requirements"):
            relevant.append(line)
    return relevant


def check_bundle(bundle: Path) -> None:
    manifest = bundle / "MANIFEST"
    if not manifest.is_file():
        raise Missing(f"{bundle} has no MANIFEST: {PREPARE}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    found = re.search(r"^pyproject: (\w+)", manifest.read_text(), re.MULTILINE)
    if not found or found.group(1) != wanted:
        raise Missing(f"{bundle} was gathered for another pyproject.toml: {PREPARE}")


def check_mirror() -> None:
    mirror = Path(os.environ.get("PEFTBENCH_MIRROR", ""))
    absent = [name for name in MIRROR_FILES if not (mirror / name).is_file()]
    if absent:
        raise Missing(f"the mirror {mirror} lacks {', '.join(absent)}: set PEFTBENCH_MIRROR or {PREPARE}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None, help="the folder gpu_prepare.sh gathered")
    args = parser.parse_args(argv)
    try:
        if args.bundle is not None:
            check_bundle(args.bundle)
        needed = requirements_closure()
        check_imports(direct_requirements())
        complaints = pip_check({"peftbench", *needed})
        if complaints:
            more = f" (and {len(complaints) - 1} more)" if len(complaints) > 1 else ""
            raise Missing(f"pip check: {complaints[0]}{more}: {_ADD}")
        check_mirror()
    except Missing as missing:
        print(f"guard: {missing}", file=sys.stderr)
        return 3
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in REPORTED)
    print(
        f"guard: ready, Python {sys.version.split()[0]}, {versions}; {len(needed)} packages import at "
        "versions peftbench accepts, pip check has nothing against them",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
