"""Configurations of a method: what tells two apart (never averaged together), how the rows of a
table are named when one method has several, and which tuned values sit at the edge of the grid."""

from __future__ import annotations

from typing import Any

from peftbench.formatting import hp_text
from peftbench.records import RunRecord, run_key, task_identity
from peftbench.settings import train_identity

#: The columns that name a run in every per-run frame (pandas dtypes): its table, its row, itself.
RUN_IDENTITY = {
    "model": "string",
    "dataset": "string",
    "method": "string",
    "label": "string",
    "config": "string",
    "run_id": "string",
}


def config_key(record: RunRecord) -> str:
    """What tells two configurations of one method apart: hyper-parameters, training settings,
    the data (its fingerprint), the code (method source, peftbench version) and the kind of task
    and primary metric — runs that differ in any of these are never averaged together."""
    return run_key(_config(record))


def _config(record: RunRecord) -> dict[str, Any]:
    """What a configuration is made of; the kind of task and primary metric only where they are not
    single-text classification by accuracy (so rows of older records keep their keys)."""
    return {
        "hp": record.hyperparameters,
        "train": train_identity(record.train_config),
        "data": record.dataset_fingerprint,
        "source": record.method_source,
        "peftbench": record.peftbench_version,
        **task_identity(record.task, record.metric),
    }


def variant_labels(records: list[RunRecord]) -> dict[str, str]:
    """run id -> the row's name: the method, and where one method has several configurations in
    a table, the values of whatever varies between them (``lora (r=8)``, ``lora (r=16)``)."""
    configs: dict[tuple, dict[str, dict]] = {}
    for record in records:
        table = (record.model, record.dataset, record.metric, record.method)
        configs.setdefault(table, {})[config_key(record)] = _config(record)
    names: dict[tuple, str] = {}
    for (model, dataset, metric, method), variants in configs.items():
        varying = _varying(list(variants.values()))
        labels = {
            key: ", ".join(_shown(section, name, config) for section, name in varying)
            for key, config in variants.items()
        }
        for key, shown in labels.items():
            if not shown or list(labels.values()).count(shown) > 1:  # values that print alike: the hash
                shown = f"{shown}, {key[:6]}" if shown else key[:6]
            names[model, dataset, metric, method, key] = (
                f"{method} ({shown})" if len(variants) > 1 else method
            )
    return {r.run_id: names[r.model, r.dataset, r.metric, r.method, config_key(r)] for r in records}


_SECTIONS = ("hp", "train", "data", "source", "peftbench", "task")  # what a configuration is made of


def _varying(configs: list[dict]) -> list[tuple[str, str | None]]:
    """(section, key) pairs whose value is not the same in every configuration, in a stable order."""
    varying = []
    for section in _SECTIONS:
        values = [config.get(section) for config in configs]
        if isinstance(values[0], dict):
            keys = dict.fromkeys(key for value in values for key in value or {})
            varying += [(section, key) for key in keys if len({repr((v or {}).get(key)) for v in values}) > 1]
        elif len({repr(value) for value in values}) > 1:
            varying.append((section, None))
    return varying


def _shown(section: str, key: str | None, config: dict) -> str:
    if key is not None:
        return hp_text({key: config[section].get(key)})
    found = config.get(section) or ("classification" if section == "task" else "unknown")
    shown = {"data": f"data {found[:6]}", "peftbench": f"peftbench {found}", "task": f"task {found}"}
    return shown.get(section, str(found))


#: Why a search stopped extending a key, as the records say (``peftbench.runs.search.extension``),
#: and what a table shows for it: nothing where the choice is inside the values tried.
STOP_NOTES = {"inside": None, "at bound": "at bound", "at limit": "at limit"}
LEGACY_EDGE = "grid edge"  # records from before the search extended its edges


def edge_notes(tuning: dict[str, Any] | None) -> dict[str, str]:
    """Per tuned key whose choice may not be the best value: ``at bound`` (the end of its declared
    range), ``at limit`` (the extension limit stopped the search), or, in records written before
    searches extended their edges, ``grid edge`` (the end of the values tried)."""
    if not tuning or not tuning.get("chosen"):
        return {}
    stops = tuning.get("stops")
    if isinstance(stops, dict):
        return {key: STOP_NOTES[stop] for key, stop in stops.items() if STOP_NOTES.get(stop)}
    return dict.fromkeys(_edge_keys(tuning), LEGACY_EDGE)


def _edge_keys(tuning: dict[str, Any]) -> list[str]:
    """Keys whose chosen value is the smallest or largest value tried: the optimum may lie beyond."""
    edges = []
    for key, chosen in tuning["chosen"].items():
        tried = {
            row["hyperparameters"].get(key)
            for row in tuning.get("candidates", [])
            if isinstance(row.get("hyperparameters"), dict)
        }
        numbers = sorted(v for v in tried if isinstance(v, int | float) and not isinstance(v, bool))
        if len(numbers) > 1 and chosen in (numbers[0], numbers[-1]):
            edges.append(key)
    return edges
