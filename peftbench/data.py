"""Dataset resolution: a Hub id, an offline mirror folder, or a local file -> three labelled splits.

A dataset *name* resolves against the offline mirror (``$PEFTBENCH_MIRROR/datasets/<name>``)
before the Hub, so the same command works with and without network. The text column (or pair of
columns) and the label column are detected or named; the kind of task (``peftbench.tasks``) is
detected from the label column and the number of texts, or named, and it reads and checks the
labels. Missing (or unlabelled) validation or test splits are carved out of train with a fixed
seed, and every such step is written into ``notes``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from peftbench.dataset_sources import SPLIT_ALIASES, load_raw
from peftbench.errors import PeftbenchError
from peftbench.tasks.base import Task
from peftbench.tasks.inputs import PAIR_COLUMNS, TEXT_COLUMNS

LABEL_COLUMNS = ("label", "labels", "class", "target", "category", "score")
#: The seed that draws a training subset (``--train-examples``): fixed, so every method, seed and
#: sweep given the same number trains on the same examples.
SUBSET_SEED = 0


def dataset_label(name: str, config: str | None = None, train_examples: int | None = None) -> str:
    """What records and tables call a dataset: ``glue/rte``, ``rotten_tomatoes[train=2000]``."""
    label = name + (f"/{config}" if config else "")
    return label + (f"[train={train_examples}]" if train_examples else "")


@dataclass(frozen=True)
class DatasetSpec:
    """What the user asked for; columns and the kind of task are detected when left as ``None``."""

    name: str = "rotten_tomatoes"
    config: str | None = None
    text_column: str | None = None  # one column, or two comma-separated for a pair: "premise,hypothesis"
    label_column: str | None = None
    carve_fraction: float = 0.1
    carve_seed: int = 0
    task: str | None = None  # a registered kind of task: "classification", "regression", ...
    metric: str | None = None  # the primary metric, among the task's (default: the task's own)
    train_examples: int | None = None  # train on a fixed subset of this many (``SUBSET_SEED``)


@dataclass
class TextSplit:
    """One split: a text (or the first of a pair) and a label per example; ``second`` holds the
    second text of each pair, ``None`` for single texts."""

    texts: list[str]
    labels: np.ndarray
    second: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def fingerprint(self, digest) -> None:
        """Feed every text and label into ``digest`` (single texts hash as they always have)."""
        digest.update("\x1e".join(self.texts).encode())
        if self.second is not None:
            digest.update(b"\x1d" + "\x1e".join(self.second).encode())
        digest.update(_label_bytes(self.labels))

    def pick(self, indices: np.ndarray) -> TextSplit:
        """The examples at ``indices``, in that order."""
        second = None if self.second is None else [self.second[i] for i in indices]
        return TextSplit([self.texts[i] for i in indices], self.labels[indices], second)


def _label_bytes(labels: np.ndarray) -> bytes:
    """Class ids as int64 (as records always hashed them), values as float64."""
    kind = np.int64 if np.issubdtype(labels.dtype, np.integer) else np.float64
    return labels.astype(kind).tobytes()


@dataclass
class LabelledSplits:
    """Train/validation/test, labelled as ``task`` reads labels (class ids in
    ``range(len(label_names))``; regression targets as floats)."""

    train: TextSplit
    validation: TextSplit
    test: TextSplit
    label_names: tuple[str, ...]  # the head's outputs: class names, or the target's name
    source: str
    text_columns: tuple[str, ...]
    label_column: str
    task: Task  # the kind of task, its primary metric chosen
    notes: list[str] = field(default_factory=list)
    #: ``{"examples": N, "of": M, "seed": SUBSET_SEED}`` where train is a fixed subset; else None.
    train_subset: dict[str, int] | None = None

    @property
    def num_labels(self) -> int:
        """How many outputs the head has (one per class; one for a regression)."""
        return self.task.outputs(self.label_names)

    @property
    def text_column(self) -> str:
        return ",".join(self.text_columns)

    def fingerprint(self) -> str:
        """A hash of every text and label, so a record knows exactly which data it saw."""
        digest = hashlib.sha256()
        for split in (self.train, self.validation, self.test):
            split.fingerprint(digest)
        digest.update("\x1f".join(self.label_names).encode())
        return digest.hexdigest()[:16]


def load_splits(spec: DatasetSpec, tasks=None) -> LabelledSplits:
    """Load ``spec`` from a local path, the mirror or the Hub and normalise it to three splits.

    ``tasks`` is the registry of kinds of task (default: every registered one)."""
    raw, source = load_raw(spec.name, spec.config)
    splits = {SPLIT_ALIASES[name]: raw[name] for name in raw if name in SPLIT_ALIASES}
    if "train" not in splits:
        found = ", ".join(raw) or "none"
        raise PeftbenchError(f"dataset '{spec.name}' has no train split (splits found: {found})")
    if tasks is None:
        from peftbench.tasks.registry import collect_tasks

        tasks = collect_tasks()
    train = splits["train"]
    forced = tasks.get(spec.task) if spec.task else None
    text_columns = _pick_text_columns(train, spec, forced.inputs if forced else (1, 2))
    label_column = _pick_column(train, spec.label_column, LABEL_COLUMNS, "label", spec.name)
    feature, values = train.features[label_column], train[label_column]
    task = forced or tasks.detect(feature, values, len(text_columns), label_column, spec.name)
    label_names, encode = task.label_encoding(feature, values, label_column)
    texts = {
        name: _text_split(split, text_columns, encode(split[label_column])) for name, split in splits.items()
    }
    notes = _complete_splits(texts, spec, task)
    subset = _subset(texts, spec, notes)
    for name, split in texts.items():
        if len(split) == 0:
            raise PeftbenchError(f"dataset '{spec.name}': the {name} split is empty")
        task.check_split(name, split.labels, label_names, spec.name)
    task.check_train(texts["train"].labels, label_names, spec.name)
    return LabelledSplits(
        texts["train"],
        texts["validation"],
        texts["test"],
        label_names,
        source,
        text_columns,
        label_column,
        task.scored_by(spec.metric, label_names),
        notes,
        subset,
    )


def _text_split(split, columns: tuple[str, ...], labels: np.ndarray) -> TextSplit:
    texts = [[str(t) for t in split[column]] for column in columns]
    return TextSplit(texts[0], labels, texts[1] if len(texts) > 1 else None)


def _pick_text_columns(split, spec: DatasetSpec, inputs: tuple[int, ...]) -> tuple[str, ...]:
    """The named column or pair (``a,b``), else the first detected pair (where the task reads
    pairs), else the first detected single column."""
    columns = list(split.column_names)
    if spec.text_column is not None:
        wanted = tuple(part.strip() for part in spec.text_column.split(","))
        if len(wanted) not in (1, 2) or "" in wanted:
            raise PeftbenchError(
                f"--text-column '{spec.text_column}': name one text column, or two for a pair "
                "(e.g. --text-column premise,hypothesis)"
            )
        for name in wanted:
            _pick_column(split, name, (), "text", spec.name)
        if spec.task and len(wanted) not in inputs:
            raise PeftbenchError(
                f"task '{spec.task}' reads {' or '.join(map(str, inputs))} text column(s), but "
                f"--text-column names {len(wanted)}: {spec.text_column}"
            )
        return wanted
    if 2 in inputs:
        for pair in PAIR_COLUMNS:
            if all(name in columns for name in pair):
                return pair
    if 1 not in inputs:
        looked = ", ".join("/".join(pair) for pair in PAIR_COLUMNS)
        raise PeftbenchError(
            f"dataset '{spec.name}' has no pair of text columns (looked for {looked}); columns found: "
            f"{', '.join(columns)}; name them with --text-column first,second"
        )
    return (_pick_column(split, None, TEXT_COLUMNS, "text", spec.name),)


def _pick_column(split, wanted: str | None, candidates, role: str, dataset: str) -> str:
    """``wanted`` if the split has it, else the first of ``candidates`` it has; one line otherwise."""
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


def _complete_splits(texts: dict[str, TextSplit], spec: DatasetSpec, task: Task) -> list[str]:
    """Fill in missing (or unlabelled, like GLUE's test) splits from train, with a fixed seed."""
    notes = []
    for name in ("validation", "test"):
        if name in texts and task.unlabelled(texts[name].labels):
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


def _subset(texts: dict[str, TextSplit], spec: DatasetSpec, notes: list[str]) -> dict[str, int] | None:
    """Replace train by a fixed random subset of ``spec.train_examples`` (in the split's order),
    after validation and test were settled, so they are the same as without a subset."""
    wanted, train = spec.train_examples, texts["train"]
    if wanted is None:
        return None
    if wanted >= len(train):
        raise PeftbenchError(
            f"--train-examples {wanted} is not fewer than the {len(train):,} training examples of "
            f"'{spec.name}': pass fewer, or leave it out to train on them all"
        )
    chosen = np.sort(np.random.default_rng(SUBSET_SEED).permutation(len(train))[:wanted])
    texts["train"] = train.pick(chosen)
    notes.append(
        f"trained on a fixed subset of {wanted:,} of the {len(train):,} training examples "
        f"(seed {SUBSET_SEED}); validation and test untouched"
    )
    return {"examples": wanted, "of": len(train), "seed": SUBSET_SEED}


def _carve(split: TextSplit, fraction: float, seed: int) -> tuple[TextSplit, TextSplit]:
    order = np.random.default_rng(seed).permutation(len(split))
    size = max(1, int(round(len(split) * fraction)))
    held, kept = np.sort(order[:size]), np.sort(order[size:])
    return split.pick(kept), split.pick(held)
