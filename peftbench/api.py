"""``peftbench.run``: the Python entry point, taking the same settings as ``peftbench run``."""

from __future__ import annotations

import inspect
from typing import Any

from peftbench.leaderboard import Leaderboard
from peftbench.records import read_records
from peftbench.runs.sweep import run_sweep
from peftbench.settings import setting_fields, sweep_config


def run(**settings: Any) -> Leaderboard:
    """Fine-tune a model on a dataset with each method and seed; return the leaderboard.

    Takes every setting of ``peftbench run`` as a keyword argument, with the same names, types,
    defaults and bounds (declared once in ``SweepConfig`` and ``TrainConfig``), for example
    ``peftbench.run(model="minilm", methods=["lora", "ia3"], seeds=[0, 1, 2], epochs=2,
    hp={"lora": {"r": 16}}, out="runs/")``. ``hp`` also takes ``["lora.r=16"]``.

    Finished runs (same model, data, method, hyper-parameters, seed) are reused unless
    ``force``. ``tune`` picks each method's hyper-parameters from its search space on validation,
    by the task's primary metric (``metric``) in its direction (``search``: successive halving by
    default; ``tune_seeds`` seeds), then evaluates the choice on test with every seed; every run
    keeps its best validation checkpoint. ``text_column="premise,hypothesis"`` reads text pairs;
    ``task`` and ``metric`` name the kind of task and its primary metric where detection is not
    wanted. ``executor="ray"``
    spreads the runs over a Ray cluster (``ray_address``, else ``$RAY_ADDRESS``, else a local one).
    The board's ``incomplete_runs()`` are this sweep's runs that failed or diverged.
    """
    config = sweep_config(**settings)
    outcome = run_sweep(config)
    return Leaderboard(read_records(outcome.out), incomplete=outcome.incomplete)


# help(peftbench.run) and editors show every setting with its default, derived from the models.
run.__signature__ = inspect.Signature(
    [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=field.get_default(call_default_factory=True),
            annotation=field.annotation,
        )
        for name, field in setting_fields().items()
    ],
    return_annotation=Leaderboard,
)
