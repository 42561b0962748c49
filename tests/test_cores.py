"""Sweeps writing one results folder from one machine share its cores (``peftbench.runs.cores``)."""

from __future__ import annotations

import os

import pytest

from peftbench.errors import PeftbenchError
from peftbench.runs import cores
from peftbench.runs.cores import HostCores
from peftbench.runs.executors import LocalExecutor
from peftbench.runs.store import ResultStore

ME = f"pid {os.getpid()} on {os.uname().nodename}"


class Executor:
    """What sharing the cores asks of an executor, and what it was told."""

    def __init__(self, host_cores: str = "shared", own: int = 8) -> None:
        self.host_cores, self.own = host_cores, own

    def use_threads(self, cap: int, sweeps: int) -> int:
        self.sweeps = sweeps
        return 0 if self.host_cores == "none" else min(self.own, cap)


@pytest.fixture
def eight_cpus(monkeypatch):
    monkeypatch.setattr(cores, "available_cpus", lambda: 8)


def test_a_sweep_alone_keeps_its_threads_and_two_take_half_each(tmp_path, eight_cpus):
    with ResultStore(tmp_path) as first, ResultStore(tmp_path) as second:
        alone = HostCores(first.claims, Executor())
        assert alone.share() == 8
        joined = HostCores(second.claims, Executor(), progress=False)
        assert joined.share(first=True) == 4 and joined.executor.sweeps == 2
        assert alone.share() == 4  # from its next run on
    with ResultStore(tmp_path) as again:  # the others are gone: all of them again
        assert HostCores(again.claims, Executor()).share() == 8


def test_a_sweep_waits_while_another_runs_with_every_core(tmp_path, eight_cpus, monkeypatch, capsys):
    with ResultStore(tmp_path) as first, ResultStore(tmp_path) as second:
        running = HostCores(first.claims, Executor())  # it has started a run with all 8
        arriving = HostCores(second.claims, Executor())
        waits = []

        def pause():  # while the second waits, the first's run ends and it takes its share
            waits.append(running.share())

        monkeypatch.setattr(cores, "pause", pause)
        assert arriving.share() == 4
    assert waits == [4]  # it waited once: never both at 8
    assert capsys.readouterr().err == (
        f"  waiting for {ME} to end its current run: it uses 8 of this machine's 8 CPU threads, and 4 "
        f"is the share of each of the 2 sweeps writing {tmp_path} here\n"
    )


def test_a_sweep_whose_runs_go_to_a_ray_cluster_it_joined_leaves_the_cores_to_others(tmp_path, eight_cpus):
    with ResultStore(tmp_path) as local, ResultStore(tmp_path) as ray:
        assert HostCores(ray.claims, Executor("none")).share() == 0
        assert HostCores(local.claims, Executor()).share() == 8


def test_a_local_ray_cluster_holding_the_cores_refuses_a_second_sweep_at_once(tmp_path, eight_cpus):
    with ResultStore(tmp_path) as first, ResultStore(tmp_path) as second:
        HostCores(first.claims, Executor("fixed"))  # its own local cluster, with all 8 CPUs
        with pytest.raises(PeftbenchError) as refused:
            HostCores(second.claims, Executor())
        assert str(refused.value) == (
            f"results folder {tmp_path} is being written by {ME}, whose own local Ray cluster keeps 8 of "
            "this machine's 8 CPUs until it ends, so a second sweep here would only fight it for them: wait "
            "for it to finish, or run both sweeps on one Ray cluster (`ray start --head`, then --executor "
            "ray --ray-address ADDRESS)"
        )
        assert HostCores(second.claims, Executor("none")).share() == 0  # one joining a cluster may


def test_a_local_cluster_started_beside_another_sweep_gets_its_share(tmp_path, eight_cpus):
    with ResultStore(tmp_path) as first, ResultStore(tmp_path) as second:
        HostCores(first.claims, Executor())
        assert HostCores(second.claims, Executor("fixed")).share(first=True) == 4


def test_the_local_executor_splits_its_share_between_its_runs(monkeypatch):
    monkeypatch.setattr("peftbench.runs.executors.available_cpus", lambda: 8)
    executor = LocalExecutor()
    own = executor._own_threads  # torch's choice in this process (OMP_NUM_THREADS)
    assert executor.use_threads(64, 1) == own and executor.threads == own  # alone: its own choice
    assert executor.use_threads(1, 2) == 1 and executor.sweeps == 2
    executor.runs = 2  # with two runs at a time in worker processes
    assert executor.use_threads(8, 1) == 8 and executor.threads == 4
    assert executor.use_threads(4, 2) == 4 and executor.threads == 2
    assert executor.use_threads(1, 8) == 2 and executor.threads == 1  # never below one a run
