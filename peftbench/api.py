"""``peftbench.run``: the Python entry point, taking the same options as ``peftbench run``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from peftbench.leaderboard import Leaderboard
from peftbench.sweep import SweepConfig, parse_hp_overrides, run_sweep
from peftbench.train import TrainConfig


def run(
    model: str = "gpt2",
    dataset: str = "rotten_tomatoes",
    methods: Iterable[str] | str = ("lora",),
    out: str | Path = "runs",
    *,
    seeds: Iterable[int] | int = (0,),
    epochs: float = 1.0,
    hp: Mapping[str, Mapping[str, Any]] | Iterable[str] | None = None,
    dataset_config: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    batch_size: int = 32,
    max_length: int = 128,
    max_steps: int | None = None,
    device: str | None = None,
    precision: str = "auto",
    compile: bool = False,
    force: bool = False,
    tune: bool = False,
    references: bool = True,
    trust_remote_code: bool = False,
    progress: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
) -> Leaderboard:
    """Fine-tune ``model`` on ``dataset`` with each method and seed; return the leaderboard.

    ``hp`` overrides hyper-parameters per method: ``{"lora": {"r": 16}}`` or ``["lora.r=16"]``.
    Finished runs (same model, data, method, hyper-parameters, seed) are reused unless ``force``.
    ``tune`` picks each method's hyper-parameters from its search space on validation accuracy
    (first seed), then evaluates the choice on test with every seed. ``executor="ray"`` spreads
    the runs over a Ray cluster (``ray_address``, else ``$RAY_ADDRESS``, else a local one).
    """
    config = SweepConfig(
        model=model,
        dataset=dataset,
        dataset_config=dataset_config,
        methods=[m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods),
        seeds=[seeds] if isinstance(seeds, int) else list(seeds),
        out=Path(out),
        hp=parse_hp_overrides(hp),
        train=TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            max_length=max_length,
            max_steps=max_steps,
            precision=precision,
            compile=compile,
        ),
        text_column=text_column,
        label_column=label_column,
        device=device,
        force=force,
        tune=tune,
        references=references,
        trust_remote_code=trust_remote_code,
        progress=progress,
        executor=executor,
        ray_address=ray_address,
    )
    return run_sweep(config)
