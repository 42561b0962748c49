"""Choosing an executor: the errors people see, with or without Ray installed."""

from __future__ import annotations

import sys

import pytest

from peftbench.cli import main
from peftbench.errors import PeftbenchError
from peftbench.runs.executors import LocalExecutor, get_executor


def test_local_is_the_default_executor():
    assert isinstance(get_executor(), LocalExecutor)


def test_an_unknown_executor_lists_the_known_ones(tmp_path, capsys):
    with pytest.raises(PeftbenchError, match="unknown executor 'dask'; known executors: local, ray"):
        get_executor("dask")
    assert main(["run", "--model", "tiny-gpt2", "--executor", "dask", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error == "peftbench: error: unknown executor 'dask'; known executors: local, ray\n"


def test_ray_without_ray_installed_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` now fails as if not installed
    assert main(["run", "--model", "tiny-gpt2", "--executor", "ray", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "peftbench: error: Ray is not installed: pip install 'peftbench[ray]'\n"


def test_a_ray_address_needs_the_ray_executor():
    with pytest.raises(PeftbenchError, match="--ray-address is only used with --executor ray"):
        get_executor("local", ray_address="ray://head:10001")
