"""Plugins used by the tests, written exactly as a third-party package would write them."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from peftbench import Method, PeftbenchError, hookimpl
from peftbench.models import classification_head


class HeadProbe(Method):
    """Train only the classification head, through the low-level interface."""

    name = "head_probe"
    description = "Linear probe: only the classification head <b>trains</b>."
    defaults = {"learning_rate": 1e-2}

    def prepare(self, model, task, hp):
        model.requires_grad_(False)
        classification_head(model).requires_grad_(True)
        return model

    def save(self, model, directory: Path) -> None:
        state = {k: v.contiguous() for k, v in classification_head(model).state_dict().items()}
        save_file(state, str(directory / "head.safetensors"))

    def load(self, base_model, directory: Path, task, hp):
        classification_head(base_model).load_state_dict(load_file(str(directory / "head.safetensors")))
        return base_model


class HeadProbePlugin:
    @hookimpl
    def register_methods(self, register):
        register(HeadProbe())


class DuplicateLoraPlugin:
    @hookimpl
    def register_methods(self, register):
        from peftbench.methods.lora import Lora

        register(Lora())


def probe(name: str) -> HeadProbe:
    """A head probe registered under another name (a valid one, or not)."""
    method = HeadProbe()
    method.name = name
    return method


class MethodsPlugin:
    """Registers the given method instances (so a test can look at them after a sweep)."""

    def __init__(self, *methods: Method) -> None:
        self.methods = methods

    @hookimpl
    def register_methods(self, register):
        for method in self.methods:
            register(method)


class ProbePlugin(MethodsPlugin):
    """Registers a head probe under each of the given names."""

    def __init__(self, *names: str) -> None:
        super().__init__(*(probe(name) for name in names))


class BadNamePlugin(ProbePlugin):
    def __init__(self) -> None:
        super().__init__("Head-Probe")


class NeedsPackagePlugin:
    """A plugin whose own hook code refuses with a PeftbenchError (after registering one method)."""

    @hookimpl
    def register_methods(self, register):
        register(probe("half_registered"))
        raise PeftbenchError("peftbench-needs-x needs package x: pip install x")


class SwallowingPlugin:
    """Catches the registry's refusal and raises its own error instead: still a refusal."""

    @hookimpl
    def register_methods(self, register):
        try:
            register(probe("lora"))
        except Exception as error:
            raise RuntimeError("wrapped") from error


class RaisingPlugin:
    @hookimpl
    def register_methods(self, register):
        raise RuntimeError("boom while registering")


class ExplodingMethod(Method):
    """Raises inside the training step, as a buggy plugin would."""

    name = "exploding"
    description = "Raises during the forward pass."

    def prepare(self, model, task, hp):
        model.requires_grad_(False)
        head = classification_head(model)
        head.requires_grad_(True)

        def explode(*_):
            raise RuntimeError("kaboom in forward")

        head.register_forward_hook(explode)
        return model

    def save(self, model, directory):
        pass

    def load(self, base_model, directory, task, hp):
        return base_model


class NanMethod(HeadProbe):
    """A head that produces NaN logits: the loss diverges at once."""

    name = "nan_head"
    description = "Diverges."

    def prepare(self, model, task, hp):
        model = super().prepare(model, task, hp)
        with torch.no_grad():
            classification_head(model).weight.fill_(float("nan"))
        return model


class FaultyPlugin:
    @hookimpl
    def register_methods(self, register):
        register(ExplodingMethod())
        register(NanMethod())


class SuddenDeath(HeadProbe):
    """SIGKILLs its own process in the first training step, as the OOM killer or a segfault would;
    only ever a worker process (``--runs-per-device``), never the test's own."""

    name = "sudden_death"
    description = "Kills the worker process running it."

    def prepare(self, model, task, hp):
        model = super().prepare(model, task, hp)
        classification_head(model).register_forward_hook(_die_in_a_worker)
        return model


def _die_in_a_worker(*_):
    if multiprocessing.parent_process() is None:
        raise RuntimeError("sudden_death only kills worker processes, never the test process")
    os.kill(os.getpid(), signal.SIGKILL)
