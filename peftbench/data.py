"""Dataset resolution: a Hub id, an offline mirror folder, or a local file -> three labelled splits.

A dataset *name* resolves against the offline mirror (``$PEFTBENCH_MIRROR/datasets/<name>``)
before the Hub, so the same command works with and without network. Missing validation or test
splits are carved out of train with a fixed seed, and every such step is written into ``notes``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np

from peftbench.errors import PeftbenchError

datasets.disable_progress_bars()

MIRROR_ENV = "PEFTBENCH_MIRROR"
TEXT_COLUMNS = ("text", "sentence", "content", "review", "document", "tweet", "sms", "question")
LABEL_COLUMNS = ("label", "labels", "class", "target", "category")
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


@dataclass(frozen=True)
class DatasetSpec:
    """What the user asked for; columns are auto-detected when left as ``None``."""

    name: str = "rotten_tomatoes"
    config: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    carve_fraction: float = 0.1
    carve_seed: int = 0


@dataclass
class TextSplit:
    texts: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class LabelledSplits:
    """Train/validation/test with integer labels in ``range(len(label_names))``."""

    train: TextSplit
    validation: TextSplit
    test: TextSplit
    label_names: tuple[str, ...]
    source: str
    text_column: str
    label_column: str
    notes: list[str] = field(default_factory=list)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def fingerprint(self) -> str:
        """A hash of every text and label, so a record knows exactly which data it saw."""
        digest = hashlib.sha256()
        for split in (self.train, self.validation, self.test):
            digest.update("\x1e".join(split.texts).encode())
            digest.update(split.labels.astype(np.int64).tobytes())
        digest.update("\x1f".join(self.label_names).encode())
        return digest.hexdigest()[:16]


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


def load_splits(spec: DatasetSpec) -> LabelledSplits:
    """Load ``spec`` from a local path, the mirror or the Hub and normalise it to three splits."""
    raw, source = _load_raw(spec)
    splits = {SPLIT_ALIASES[name]: raw[name] for name in raw if name in SPLIT_ALIASES}
    if "train" not in splits:
        found = ", ".join(raw) or "none"
        raise PeftbenchError(f"dataset '{spec.name}' has no train split (splits found: {found})")
    text_column = _pick_column(splits["train"], spec.text_column, TEXT_COLUMNS, "text", spec.name)
    label_column = _pick_column(splits["train"], spec.label_column, LABEL_COLUMNS, "label", spec.name)
    label_names, encode = _label_encoding(splits, label_column)
    texts = {
        name: TextSplit([str(t) for t in split[text_column]], encode(split[label_column]))
        for name, split in splits.items()
    }
    notes = _complete_splits(texts, spec)
    for name, split in texts.items():
        _check_split(name, split, len(label_names), spec.name)
    _check_classes(texts["train"], label_names, spec.name)
    return LabelledSplits(
        texts["train"],
        texts["validation"],
        texts["test"],
        label_names,
        source,
        text_column,
        label_column,
        notes,
    )


def _load_raw(spec: DatasetSpec) -> tuple[datasets.DatasetDict, str]:
    path = Path(spec.name).expanduser()
    if not path.exists():
        mirrored = mirror_path("datasets", spec.name, spec.config)
        if mirrored is not None:
            return _load_local(mirrored, None), str(mirrored)
        if looks_like_path(spec.name) or Path(spec.name).suffix in FILE_BUILDERS:
            raise PeftbenchError(f"dataset path '{spec.name}' does not exist")
        return _load_hub(spec), f"hub:{spec.name}" + (f"/{spec.config}" if spec.config else "")
    return _load_local(path, spec.config), str(path.resolve())


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


def _load_hub(spec: DatasetSpec) -> datasets.DatasetDict:
    try:
        return datasets.load_dataset(spec.name, spec.config)
    except Exception as error:
        raise PeftbenchError(
            f"could not load dataset '{spec.name}' from the Hugging Face Hub ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); check the name, pass a local path, "
            f"or set {MIRROR_ENV} to a folder holding datasets/{spec.name}"
        ) from error


def _pick_column(split, wanted: str | None, candidates, role: str, dataset: str) -> str:
    columns = list(split.column_names)
    if wanted is not None:
        if wanted not in columns:
            raise PeftbenchError(
                f"dataset '{dataset}' has no {role} column '{wanted}'; columns found: {', '.join(columns)}"
            )
        return wanted
    for candidate in candidates:
        if candidate in columns:
            return candidate
    raise PeftbenchError(
        f"dataset '{dataset}' has no {role} column (looked for {', '.join(candidates)}); columns found: "
        f"{', '.join(columns)}; name it with --{role}-column"
    )


def _label_encoding(splits: dict, column: str):
    """Label names and an encoder to integer ids, from a ClassLabel, strings or integers."""
    feature = splits["train"].features[column]
    if isinstance(feature, datasets.ClassLabel):
        return tuple(feature.names), lambda values: np.asarray(values, dtype=np.int64)
    train_values = splits["train"][column]
    if train_values and all(isinstance(v, str) for v in train_values):
        names = tuple(sorted(set(train_values)))
        index = {name: i for i, name in enumerate(names)}
        # Unseen strings map to -2 so the range check reports them instead of guessing.
        return names, lambda values: np.asarray([index.get(v, -2) for v in values], dtype=np.int64)
    try:  # the classes are those of train; other splits are checked against them
        largest = int(max(train_values, default=0))
    except (TypeError, ValueError) as error:
        raise PeftbenchError(f"label column '{column}' must hold integers or strings: {error}") from error
    names = tuple(str(i) for i in range(largest + 1))
    return names, lambda values: np.asarray(values, dtype=np.int64)


def _complete_splits(texts: dict[str, TextSplit], spec: DatasetSpec) -> list[str]:
    """Fill in missing (or unlabelled, like GLUE's test) splits from train, with a fixed seed."""
    notes = []
    for name in ("validation", "test"):
        if name in texts and len(texts[name]) and (texts[name].labels < 0).all():
            del texts[name]
            notes.append(f"the {name} split has no labels and was not used")
    if "test" not in texts and "validation" in texts:
        texts["test"] = texts.pop("validation")
        notes.append("the dataset's validation split serves as test")
    for name in ("test", "validation"):
        if name not in texts:
            texts["train"], texts[name] = _carve(texts["train"], spec.carve_fraction, spec.carve_seed)
            notes.append(f"{name} carved from train ({spec.carve_fraction:.0%}, seed {spec.carve_seed})")
    return notes


def _carve(split: TextSplit, fraction: float, seed: int) -> tuple[TextSplit, TextSplit]:
    order = np.random.default_rng(seed).permutation(len(split))
    size = max(1, int(round(len(split) * fraction)))
    held, kept = np.sort(order[:size]), np.sort(order[size:])
    pick = lambda idx: TextSplit([split.texts[i] for i in idx], split.labels[idx])  # noqa: E731
    return pick(kept), pick(held)


def _check_classes(train: TextSplit, label_names: tuple[str, ...], dataset: str) -> None:
    """A classifier needs two classes to tell apart; with one, every method "wins" by default."""
    present = np.unique(train.labels)
    if len(present) < 2:
        only = label_names[int(present[0])] if len(present) else "none"
        raise PeftbenchError(
            f"dataset '{dataset}': the train split has only one class ({only!r}); a classifier needs "
            "at least two: check the label column (--label-column) or the data"
        )


def _check_split(name: str, split: TextSplit, num_labels: int, dataset: str) -> None:
    if len(split) == 0:
        raise PeftbenchError(f"dataset '{dataset}': the {name} split is empty")
    bad = split.labels[(split.labels < 0) | (split.labels >= num_labels)]
    if len(bad):
        raise PeftbenchError(
            f"dataset '{dataset}': the {name} split has {len(bad)} labels outside 0..{num_labels - 1} "
            f"(first: {int(bad[0])}); fix the labels or the label column"
        )
