"""Cases of a batch on a Dask cluster: a local one on this machine's cores and GPUs, or an
existing one given by its scheduler's address (``nsn2n batch --scheduler``).

Dask distributed is the field's standard engine for Python work over many processes and
machines (scheduling, retries of lost workers, a dashboard); it is an optional dependency
(``pip install nsn2n[batch]``), imported only here and only when a cluster is asked for.

Each case is one task that runs ``batch.run_case`` on a worker, so a worker reads its input
and writes its output and record itself: on several machines, the input and output folders
must be the same paths on every worker (a shared file system).  One case per worker at a
time: a case already uses the worker's threads (``threads``) and, with a GPU, the card.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence, Tuple

from .batch import FAILED, Case, run_case
from .errors import InputError


# Torch threads of one case on a CPU worker unless told otherwise.  On 2 cores, one case
# at a time with both threads did 7.0 real ASL volumes a minute against 5.1 for two
# one-thread workers (docs/benchmarks.md, "Batch"): small convolutions still gain from a
# second thread.  Beyond 4 threads they were not measured; more CPUs give more workers.
CASE_THREADS = 4


def local_workers(threads: int, cpus: Optional[int] = None, gpus: int = 0) -> int:
    """How many workers a local cluster starts: one per GPU when there are GPUs, else as
    many as the CPUs hold at ``threads`` each."""
    if gpus > 0:
        return gpus
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, threads))


def plan_workers(threads: Optional[int] = None, cpus: Optional[int] = None, gpus: int = 0
                 ) -> Tuple[int, int]:
    """``--workers auto``: how many cases run at once and the torch threads of each (the
    given ``threads``, else up to :data:`CASE_THREADS`); one worker means in-process."""
    cpus = cpus or os.cpu_count() or 1
    per_case = threads or min(cpus, CASE_THREADS)
    return local_workers(per_case, cpus, gpus), per_case


def device_for_worker(device: str, worker_name, gpus: int) -> str:
    """The device a worker's cases run on: with ``auto`` and several GPUs, worker ``k`` of a
    local cluster (named 0, 1, ...) gets ``cuda:k mod gpus``, so no two workers share a
    card; otherwise the option as given (a worker started with CUDA_VISIBLE_DEVICES sees
    one card, its ``cuda:0``)."""
    if device != "auto" or gpus < 2:
        return device
    try:
        return f"cuda:{int(worker_name) % gpus}"
    except (TypeError, ValueError):  # an external worker with a name of its own
        return device


def cluster_task(case: Case, threads: Optional[int]) -> dict:
    """What a worker runs: the case on this worker's device."""
    import torch
    from distributed import get_worker

    gpus = torch.cuda.device_count()
    return run_case(case, threads,
                    device=device_for_worker(case.options.device, get_worker().name, gpus))


def run_on_cluster(cases: Sequence[Case], on_record: Callable[[dict], None], *,
                   scheduler: Optional[str] = None, workers: Optional[int] = None,
                   threads: int = 1) -> None:
    """Run ``cases`` on the cluster at ``scheduler``, or on a local cluster of ``workers``
    processes (default :func:`local_workers`) of ``threads`` torch threads per case, each
    record to ``on_record`` as it comes.
    A worker lost in the middle of a case (killed, out of memory) fails that case only."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise InputError("a cluster needs Dask: pip install 'dask[distributed]'") from None
    cluster = None
    if scheduler is None:
        import torch

        count = workers or local_workers(threads, gpus=torch.cuda.device_count())
        cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    client = Client(scheduler or cluster)
    try:
        futures = {client.submit(cluster_task, case, threads, pure=False,
                                 key=f"nsn2n-{index}-{case.name}"): case
                   for index, case in enumerate(cases)}
        for future in as_completed(futures):
            try:
                on_record(future.result())
            except Exception as exc:  # noqa: BLE001 - the worker died, not the case's code
                case = futures[future]
                on_record({"name": case.name, "input": str(case.input),
                           "output": str(case.output), "status": FAILED,
                           "error": f"worker lost: {type(exc).__name__}: {exc}"})
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
