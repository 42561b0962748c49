"""How sweeps writing one results folder from one machine split its CPU threads.

Two torch processes that each use every core slow each other down many times over (their OpenMP
threads spin while they wait), so sweeps that share a results folder on one host share its cores:

- **The share.** A sweep's runs use at most ``cpus // n`` threads (at least one), where ``n``
  counts the live sweeps writing the folder from this host whose runs execute here (a sweep whose
  runs go to a Ray cluster it joined counts none). Alone, a sweep keeps torch's own choice
  (``OMP_NUM_THREADS``, else every core).
- **Taken before each run.** A sweep takes its share again before each run it starts (before each
  batch, with several runs at a time), and writes the threads it took in ``claims/sweeps/``.
- **No overlap at full threads.** A sweep does not start a run while another sweep here uses more
  than its share: a sweep that finds the first one running with every core waits until that run
  ends (the first takes its share for its next run), so two sweeps never both run with every core.
- **Refused: a local Ray cluster that holds the cores.** A sweep that starts its own local Ray
  cluster gives it its share of the CPUs when it starts, and cannot give them back until it ends; a
  sweep that arrives while such a cluster holds more than the new share refuses at once, naming
  that sweep: run both on one Ray cluster (``ray start --head``, then ``--ray-address``), or wait.

Sweeps that write different folders do not see each other: give those threads yourself.
"""

from __future__ import annotations

import sys
from typing import Protocol

from peftbench.errors import PeftbenchError
from peftbench.runs.claims import Claims, Peer, pause
from peftbench.runs.sharing import available_cpus

RAY_TOGETHER = (
    "run both sweeps on one Ray cluster (`ray start --head`, then --executor ray --ray-address ADDRESS)"
)


class UsesCores(Protocol):
    #: "shared": its runs execute here and can take fewer threads before any run; "fixed": here,
    #: with a number of CPUs set once at its start (its own local Ray cluster); "none": elsewhere.
    host_cores: str

    def use_threads(self, cap: int, sweeps: int) -> int:
        """Use at most ``cap`` of this host's threads from the next run on (``sweeps`` sweeps share
        the host); returns how many its runs will use in all."""
        ...


class HostCores:
    """This sweep's share of the host's CPU threads; refuses at once a case that cannot share."""

    def __init__(self, claims: Claims, executor: UsesCores, progress: bool = True) -> None:
        self.claims, self.executor, self.progress = claims, executor, progress
        self.cpus = available_cpus()
        self._told: set[str] = set()
        self.share(first=True)

    def share(self, first: bool = False) -> int:
        """Take this sweep's share now, waiting (unless ``first``) while another sweep here still
        uses more than its own; returns the threads this sweep's runs will use."""
        while True:
            with self.claims.locked():
                peers = [p for p in self.claims.peers() if p.same_host and _threads(p) > 0]
                sweeps = 1 + len(peers)
                cap = max(1, self.cpus // sweeps)
                if first and self.executor.host_cores != "none":
                    self._refuse_fixed(peers, cap)
                threads = self.executor.use_threads(cap, sweeps)
                self.claims.declare(threads=threads, fixed=self.executor.host_cores == "fixed")
            over = [p for p in peers if _threads(p) > cap and not p.info.get("fixed")]
            if first or threads == 0 or not over:
                return threads
            for peer in over:
                self._tell(
                    peer.who,
                    f"  waiting for {peer.who} to end its current run: it uses {_threads(peer)} of this "
                    f"machine's {self.cpus} CPU threads, and {cap} is the share of each of the {sweeps} "
                    f"sweeps writing {self.claims.folder.parent} here",
                )
            pause()

    def _refuse_fixed(self, peers: list[Peer], cap: int) -> None:
        for peer in peers:
            if peer.info.get("fixed") and _threads(peer) > cap:
                raise PeftbenchError(
                    f"results folder {self.claims.folder.parent} is being written by {peer.who}, whose own "
                    f"local Ray cluster keeps {_threads(peer)} of this machine's {self.cpus} CPUs until it "
                    f"ends, so a second sweep here would only fight it for them: wait for it to finish, or "
                    f"{RAY_TOGETHER}"
                )

    def _tell(self, key: str, message: str) -> None:
        if self.progress and key not in self._told:
            self._told.add(key)
            print(message, file=sys.stderr, flush=True)


def _threads(peer: Peer) -> int:
    threads = peer.info.get("threads")
    return threads if isinstance(threads, int) and not isinstance(threads, bool) else 0
