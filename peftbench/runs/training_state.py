"""A run's training state on disk, from which a later run continues exactly where it stopped.

Successive halving continues its survivors (``states/<run id>/`` of the round before), and a final
run continues the tuning run that trained the same thing (same method, hyper-parameters, settings,
seed), so neither trains anything twice. What is saved is everything the loop and the checkpoints
hold: the trainable weights, the kept checkpoint's weights, AdamW's moments, the learning-rate
schedule, the random generators, the step, the loss since the last log, the stats and the
validation evaluations so far. Continuing from it gives exactly what training straight through
gives (``tests/test_search.py`` checks it).

Tensors are safetensors and the rest JSON: like adapters, nothing in a results folder can run code
when it is read.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from peftbench.train import LoopState, TrainStats

TENSORS = "state.safetensors"
META = "state.json"


@dataclass
class SavedState:
    """One run's training state after some steps."""

    identity: str  # what was trained (``RunSpec.training_key``): only the same training continues it
    loop: LoopState
    weights: dict[str, torch.Tensor]  # the trainable parameters at ``loop.step``
    best: dict[str, torch.Tensor]  # the kept checkpoint's, where it is not ``loop.step``
    evaluations: list[dict[str, Any]]  # ``curves.Evaluation`` fields, in order

    def save(self, folder: Path) -> None:
        """Write the state into ``folder`` (created; it must not exist)."""
        folder.mkdir(parents=True)
        tensors = {f"weights/{name}": value for name, value in self.weights.items()}
        tensors |= {f"best/{name}": value for name, value in self.best.items()}
        optimizer = self.loop.optimizer
        for index, values in optimizer["state"].items():
            tensors |= {f"optimizer/{index}/{key}": v for key, v in values.items() if torch.is_tensor(v)}
        tensors["rng/cpu"] = self.loop.rng
        if self.loop.device_rng is not None:
            tensors["rng/device"] = self.loop.device_rng
        tensors["running"] = self.loop.running
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(folder / TENSORS))
        stats = dataclasses.asdict(dataclasses.replace(self.loop.stats, end=None))
        meta = {
            "identity": self.identity,
            "step": self.loop.step,
            "optimizer_groups": optimizer["param_groups"],
            "schedule": self.loop.schedule,
            "stats": {key: value for key, value in stats.items() if key != "end"},
            "evaluations": self.evaluations,
        }
        (folder / META).write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> SavedState:
        """Read what ``save`` wrote; raises ``OSError``/``ValueError`` for anything unreadable."""
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / TENSORS))
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer/"):
                _, index, name = key.split("/", 2)
                state.setdefault(int(index), {})[name] = value
        stats = dict(meta["stats"])
        stats["loss_history"] = [tuple(point) for point in stats["loss_history"]]
        loop = LoopState(
            step=meta["step"],
            optimizer={"state": state, "param_groups": meta["optimizer_groups"]},
            schedule=meta["schedule"],
            rng=tensors["rng/cpu"],
            device_rng=tensors.get("rng/device"),
            running=tensors["running"],
            stats=TrainStats(**stats),
        )
        return cls(
            identity=meta["identity"],
            loop=loop,
            weights=_under(tensors, "weights/"),
            best=_under(tensors, "best/"),
            evaluations=meta["evaluations"],
        )


def _under(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}
