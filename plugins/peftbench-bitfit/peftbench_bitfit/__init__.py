"""BitFit (Ben Zaken et al., 2022) as a peftbench plugin: only bias terms and the head train.

peft has no BitFit, so this plugin implements peftbench's low-level ``Method`` interface:
choose the trainable parameters, save exactly those (safetensors), load them back.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file

from peftbench import Method, PeftbenchError, hookimpl
from peftbench.models import classification_head

WEIGHTS = "bitfit.safetensors"


class BitFit(Method):
    name = "bitfit"
    description = "Trains only the bias terms and the classification head (Ben Zaken et al., 2022)."
    defaults = {"learning_rate": 5e-3}

    def prepare(self, model, task, hp):
        model.requires_grad_(False)
        for name, parameter in model.named_parameters():
            if name.endswith(".bias"):
                parameter.requires_grad_(True)
        classification_head(model).requires_grad_(True)
        return model

    def save(self, model, directory: Path) -> None:
        trained = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(trained, str(directory / WEIGHTS))

    def load(self, base_model, directory: Path, task, hp):
        trained = load_file(str(directory / WEIGHTS))
        own = dict(base_model.named_parameters())
        unexpected = [name for name in trained if name not in own]
        if unexpected:
            raise PeftbenchError(
                f"BitFit weights in {directory} do not fit this model (unknown: {', '.join(unexpected[:3])})"
            )
        base_model.load_state_dict(trained, strict=False)
        return self.prepare(base_model, task, hp)


@hookimpl
def register_methods(register):
    register(BitFit())
