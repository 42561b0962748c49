"""Where a dataset comes from: the offline mirror, a local folder or file, or the Hugging Face Hub.

A dataset *name* resolves against the offline mirror (``$PEFTBENCH_MIRROR/datasets/<name>``)
before the Hub, so the same command works with and without network; a path the user typed never
quietly becomes a mirrored dataset. A file that cannot be read says why, in one line.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

import datasets

from peftbench.errors import PeftbenchError

datasets.disable_progress_bars()

MIRROR_ENV = "PEFTBENCH_MIRROR"
SPLIT_ALIASES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
}
FILE_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}
TEXT_FILES = (".csv", ".tsv", ".json", ".jsonl")


def mirror_root() -> Path | None:
    """The offline mirror folder from ``$PEFTBENCH_MIRROR``, if one is configured."""
    value = os.environ.get(MIRROR_ENV)
    return Path(value).expanduser() if value else None


def mirror_path(kind: str, name: str, config: str | None = None) -> Path | None:
    """``<mirror>/<kind>/<name>[/<config>]``, also trying the last part of a Hub id ``org/name``."""
    root = mirror_root()
    if root is None or looks_like_path(name):
        return None  # a path the user typed must never quietly become a mirrored dataset
    for candidate in dict.fromkeys([name, name.rsplit("/", 1)[-1]]):
        folder = root / kind / candidate
        if config and (folder / config).is_dir():
            return folder / config
        if config and any(child.is_dir() for child in folder.glob("*")):
            found = ", ".join(sorted(c.name for c in folder.iterdir() if c.is_dir()))
            raise PeftbenchError(f"the mirror's '{candidate}' has no config '{config}' (configs: {found})")
        if folder.exists():
            return folder
    return None


def looks_like_path(name: str) -> bool:
    """``./x``, ``/x``, ``~/x`` or ``a/b/c``: not a Hub id (``name`` or ``org/name``)."""
    return name.startswith((".", "/", "~")) or Path(name).is_absolute() or name.count("/") > 1


def load_raw(name: str, config: str | None) -> tuple[datasets.DatasetDict, str]:
    """The raw splits of a dataset, and where they came from (a path, or ``hub:<id>[/<config>]``)."""
    path = Path(name).expanduser()
    if not path.exists():
        mirrored = mirror_path("datasets", name, config)
        if mirrored is not None:
            return _load_local(mirrored, None), str(mirrored)
        if looks_like_path(name) or Path(name).suffix in FILE_BUILDERS:
            raise PeftbenchError(f"dataset path '{name}' does not exist")
        return _load_hub(name, config), f"hub:{name}" + (f"/{config}" if config else "")
    return _load_local(path, config), str(path.resolve())


def _load_local(path: Path, config: str | None) -> datasets.DatasetDict:
    if path.is_dir() and config and (path / config).is_dir():
        path = path / config
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            known = ", ".join(FILE_BUILDERS)
            raise PeftbenchError(f"cannot read '{path}': use a folder or a file ending in {known}")
        extra = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
        return _guarded(lambda: datasets.load_dataset(builder, data_files=str(path), **extra), path)
    _refuse_empty_files(path)
    return _guarded(lambda: datasets.load_dataset(str(path)), path)


def _refuse_empty_files(folder: Path) -> None:
    """``datasets`` fails obscurely on a split file without rows; name the split instead."""
    for file in sorted(folder.rglob("*")):
        suffix = file.suffix.lower()
        if suffix not in FILE_BUILDERS or not file.is_file():
            continue
        if suffix == ".parquet":
            import pyarrow.parquet

            try:
                empty = pyarrow.parquet.read_metadata(file).num_rows == 0
            except Exception:  # unreadable: let datasets report it
                continue
        else:
            header = 1 if suffix in (".csv", ".tsv") else 0
            with file.open(errors="replace") as handle:  # only the first lines, however big the file
                lines = [line for line in itertools.islice(handle, 100) if line.strip()]
            empty = len(lines) <= header
        if empty:
            split = SPLIT_ALIASES.get(re.split(r"[-_.]", file.stem)[0], file.stem)
            raise PeftbenchError(
                f"dataset at '{folder}': the {split} split is empty ({file.name} has no rows)"
            )


_EMPTY_SPLIT = re.compile(r'Instruction "(\w+)" corresponds to no data')


def _guarded(load, where: Path) -> datasets.DatasetDict:
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its log line would repeat ours
    try:
        return load()
    except Exception as error:
        empty = _EMPTY_SPLIT.search(str(error))
        if empty:
            raise PeftbenchError(f"dataset at '{where}': the {empty.group(1)} split is empty") from error
        raise PeftbenchError(
            f"could not read dataset at '{where}': {_why_unreadable(error, where)}"
        ) from error
    finally:
        datasets.logging.set_verbosity(verbosity)


def _why_unreadable(error: Exception, where: Path) -> str:
    """What is wrong with the file, said precisely: the bytes that are not UTF-8 (line and
    column), the line that is not JSON; else the innermost cause ``datasets`` wrapped."""
    files = [where] if where.is_file() else sorted(where.rglob("*"))
    for file in files:
        if file.is_file() and file.suffix.lower() in TEXT_FILES:
            found = _text_problem(file)
            if found:
                return found
    causes = [error]
    while causes[-1].__cause__ or causes[-1].__context__:
        causes.append(causes[-1].__cause__ or causes[-1].__context__)
    # datasets wraps the real error ("An error occurred while generating the dataset"): skip that.
    cause = next((c for c in causes if not type(c).__name__.startswith("DatasetGeneration")), causes[-1])
    return f"{type(cause).__name__}: {(str(cause).splitlines() or [''])[0]}"


def _text_problem(file: Path) -> str | None:
    """The first line of a text data file that is not UTF-8 (or not JSON, for .jsonl/.json lines)."""
    data = file.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = data.count(b"\n", 0, bad.start) + 1
        column = bad.start - (data.rfind(b"\n", 0, bad.start) + 1) + 1
        return (
            f"{file.name} is not UTF-8 text: byte 0x{data[bad.start]:02x} at line {line}, column {column}; "
            "save the file as UTF-8"
        )
    if file.suffix.lower() not in (".jsonl", ".json") or text.lstrip().startswith("["):
        return None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                json.loads(line)
            except json.JSONDecodeError as bad:
                return f"{file.name} line {number} is not valid JSON ({bad.msg} at column {bad.colno})"
    return None


def _load_hub(name: str, config: str | None) -> datasets.DatasetDict:
    try:
        return datasets.load_dataset(name, config)
    except Exception as error:
        raise PeftbenchError(
            f"could not load dataset '{name}' from the Hugging Face Hub ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); check the name, pass a local path, "
            f"or set {MIRROR_ENV} to a folder holding datasets/{name}"
        ) from error
