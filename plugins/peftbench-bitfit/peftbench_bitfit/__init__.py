"""BitFit (Ben Zaken et al., 2022) as a peftbench plugin: only bias terms and the head train.

peft has no BitFit, so this plugin builds on peftbench's ``TrainableParametersMethod``: it only
says which parameters train; saving and loading exactly those (safetensors) is inherited.
"""

from __future__ import annotations

from peftbench import TrainableParametersMethod, classification_head, hookimpl


class BitFit(TrainableParametersMethod):
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


@hookimpl
def register_methods(register):
    register(BitFit())
