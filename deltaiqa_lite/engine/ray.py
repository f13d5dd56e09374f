"""The Ray engine: reading in Ray tasks, inference in a pool of scoring actors.

The driver streams the inputs in chunks of a few files. For each chunk it
picks the least busy actor, submits a read task to that actor's node (the
preprocessed planes, 1 MB a slice, then stay on the node) and the actor call
that scores its result; only the finished rows come back to the driver. The
number of chunks in flight is bounded, so the driver's memory does not grow
with the number of inputs.

Each actor owns one :class:`~deltaiqa_lite.score.Scorer`, made inside the
actor (an onnxruntime session cannot be pickled), with intra-op threads equal
to the CPUs the actor reserves: Ray sets ``OMP_NUM_THREADS=1`` in its workers,
and onnxruntime's own default would count every core of the node, so the
count is passed explicitly. Read tasks reserve no CPU: like the local
engine's reader threads they overlap inference, and the driver bounds how
many run.

Fault tolerance: actors restart (``max_restarts``) and Ray retries the calls
that were running on them (``max_task_retries``); a call that still fails is
submitted again to another actor, and after ``max_attempts`` its files get
error rows. A chunk's rows reach the writer once, when its call returns, so
every input appears exactly once.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from itertools import islice
from typing import Iterable, Iterator, Sequence

import numpy as np

from deltaiqa_lite.errors import DeltaIQAError, InputError
from deltaiqa_lite.model.preprocess import Preprocessing
from deltaiqa_lite.score import SliceResult, _Prepared, read_file

__all__ = ["RayEngine", "import_ray"]

RAY_EXTRA_HINT = "the Ray engine needs the 'ray' extra: pip install 'deltaiqa-lite[ray]'"


def import_ray():
    """``import ray``, or :class:`DeltaIQAError` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise DeltaIQAError(RAY_EXTRA_HINT) from None
    return ray


def read_chunk(entries: list[str | InputError], preprocessing: Preprocessing,
               image_window: tuple[float, float] | None, cwd: str,
               accept: frozenset[str] = frozenset()) -> tuple[list[_Prepared], np.ndarray]:
    """Read and preprocess the files of one chunk (the body of a Ray read task).

    Returns the files (slice identities or errors, planes removed) and their
    planes stacked ``[n_slices, size, size]`` float32, one object for the
    object store.
    """
    if os.getcwd() != cwd and os.path.isdir(cwd):
        # Relative inputs mean what they meant on the driver (same paths on every node).
        os.chdir(cwd)
    prepared: list[_Prepared] = []
    for entry in entries:
        if isinstance(entry, InputError):
            prepared.append(_Prepared(path=entry.path, error=entry))
        else:
            prepared.append(read_file(entry, preprocessing, image_window, accept=accept))
    planes = [plane for item in prepared for plane in item.planes]
    size = preprocessing.input_size
    stacked = np.stack(planes).astype(np.float32, copy=False) if planes else np.zeros((0, size, size), np.float32)
    for item in prepared:
        item.planes = []
    return prepared, stacked


def _reason(error: BaseException) -> str:
    """The line of a Ray error that says why (our own error if the actor raised one)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(("deltaiqa_lite.errors.", "ModelError", "ProviderError", "DeltaIQAError")):
            return line.split(": ", 1)[-1]
    return lines[0] if lines else type(error).__name__


class ScoringActor:
    """One Scorer per actor (the body of the Ray actor class).

    Parameters
    ----------
    model, provider, batch_size, image_window
        As :class:`~deltaiqa_lite.score.Scorer`.
    threads : int
        onnxruntime intra-op threads: the CPUs the actor reserves.
    """

    def __init__(self, model: str, provider: str, threads: int, batch_size: int,
                 image_window: tuple[float, float] | None, strict_provider: bool = False) -> None:
        from deltaiqa_lite.score import Scorer
        self.scorer = Scorer(model, provider=provider, threads=threads, batch_size=batch_size,
                             strict_provider=strict_provider, image_window=image_window)
        self.threads = threads

    def info(self) -> dict:
        """What the rows will carry, where the actor runs, and the session's real thread count."""
        import ray
        options = self.scorer.session.get_session_options()
        return {"model": self.scorer.model_name, "precision": self.scorer.precision,
                "provider": self.scorer.provider, "model_path": str(self.scorer.model_path),
                "model_version": self.scorer.card.get("version"),
                "preprocessing": self.scorer.preprocessing, "node_id": ray.get_runtime_context().get_node_id(),
                "intra_op_threads": options.intra_op_num_threads, "pid": os.getpid()}

    def score(self, chunk: tuple[list[_Prepared], np.ndarray]) -> list[SliceResult]:
        """Rows of one read chunk, in file order (error rows for files that failed to read)."""
        prepared, planes = chunk
        probabilities = self.scorer.predict(planes[..., None])
        rows: list[SliceResult] = []
        start = 0
        for item in prepared:
            if item.error is not None:
                rows.append(self.scorer._error_result(item.path, str(item.error), item.error))
                continue
            stop = start + len(item.slices)
            rows.extend(self.scorer._results(item.slices, probabilities[start:stop], item.physics))
            start = stop
        return rows


@dataclass
class _Chunk:
    entries: list
    attempts: int = 0


class RayEngine:
    """Score on a Ray cluster (or a local Ray started for the run).

    Parameters
    ----------
    model, provider, batch_size, image_window, strict_provider
        As :class:`~deltaiqa_lite.score.Scorer`; ``model`` must name the same
        file on every node (the shipped ``int8``/``fp32`` travel in the wheel).
    address : str, optional
        Ray cluster address (``ray.init(address=...)``); None: ``RAY_ADDRESS``
        if set (as under ``ray job submit``), else a local Ray for this run.
    actors : int, optional
        Scoring actors; default one per node, each reserving all its CPUs.
    actor_cpus : int, optional
        CPUs (= onnxruntime threads) per actor when ``actors`` is given (default 1).
    chunk_files : int, default 16
        Files per read task and actor call.
    in_flight_per_actor : int, default 3
        Chunks queued per actor: one scoring, the next ones reading.
    max_restarts, max_attempts : int
        Actor restarts, and tries per chunk before its files get error rows.
    start_timeout : float, default 600
        Seconds to wait for the actors to start (they wait for free CPUs).
    """

    name = "ray"

    def __init__(self, model: str = "int8", *, provider: str = "auto", batch_size: int = 8,
                 image_window: tuple[float, float] | None = None, strict_provider: bool = False,
                 address: str | None = None, actors: int | None = None, actor_cpus: int | None = None,
                 chunk_files: int = 16, in_flight_per_actor: int = 3, max_restarts: int = 3,
                 max_attempts: int = 3, start_timeout: float = 600.0, accept: Sequence[str] = ()) -> None:
        from deltaiqa_lite.read.policy import normalise_accept
        ray = import_ray()
        self.ray = ray
        self.started_ray = False
        if not ray.is_initialized():
            ray.init(address=address)
            self.started_ray = address is None and not os.environ.get("RAY_ADDRESS")
        self.chunk_files = int(chunk_files)
        self.in_flight_per_actor = int(in_flight_per_actor)
        self.max_attempts = int(max_attempts)
        self.image_window = image_window
        self.accept = normalise_accept(accept)
        self.run_id = uuid.uuid4().hex[:8]
        remote_actor = ray.remote(ScoringActor)
        self._read = ray.remote(read_chunk)
        self.actors = []
        for index, (cpus, strategy) in enumerate(self._placements(actors, actor_cpus)):
            self.actors.append(remote_actor.options(
                name=f"deltaiqa-lite-{self.run_id}-scorer-{index}", num_cpus=cpus,
                max_restarts=max_restarts, max_task_retries=max_restarts, scheduling_strategy=strategy,
            ).remote(str(model), provider, cpus, batch_size, image_window, strict_provider))
        try:
            self.actor_info = ray.get([actor.info.remote() for actor in self.actors], timeout=start_timeout)
        except ray.exceptions.GetTimeoutError:
            wanted = ", ".join(str(cpus) for cpus, _ in self._placements(actors, actor_cpus))
            self.close()
            raise DeltaIQAError(f"the scoring actors did not start within {start_timeout:g} s: they need "
                                f"free CPUs ({wanted} per actor); give --actors and --actor-cpus that fit "
                                "the cluster's free CPUs") from None
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as error:
            self.close()
            raise DeltaIQAError(f"scoring actors failed to start: {_reason(error)}") from None
        self.preprocessing: Preprocessing = self.actor_info[0]["preprocessing"]
        self.cwd = os.getcwd()

    def _placements(self, actors: int | None, actor_cpus: int | None) -> list[tuple[int, object]]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        if actors is None and actor_cpus is None:
            nodes = [n for n in self.ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) >= 1]
            if not nodes:
                raise DeltaIQAError("the Ray cluster has no node with a CPU to run a scoring actor")
            return [(int(n["Resources"]["CPU"]), NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                    for n in nodes]
        count = actors if actors is not None else max(
            1, int(self.ray.cluster_resources().get("CPU", 1)) // int(actor_cpus or 1))
        return [(int(actor_cpus or 1), "SPREAD")] * int(count)

    @property
    def model_info(self) -> dict:
        """Model name, precision and provider that the rows carry (from the first actor)."""
        return {k: self.actor_info[0][k] for k in ("model", "precision", "provider")}

    def _error_rows(self, chunk: _Chunk, reason: str) -> list[SliceResult]:
        info = self.model_info
        return [SliceResult(path=entry.path if isinstance(entry, InputError) else str(entry),
                            status="error", error=str(entry) if isinstance(entry, InputError)
                            else f"{entry}: not scored: {reason}", **info)
                for entry in chunk.entries]

    def run(self, entries: Iterable[str | InputError]) -> Iterator[tuple[list[SliceResult], int]]:
        """Yield (rows of a chunk, number of its files) as chunks finish (completion order)."""
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        entries = iter(entries)
        pending: dict = {}                 # ObjectRef of the actor call -> (chunk, actor index)
        load = [0] * len(self.actors)
        retry: list[_Chunk] = []
        exhausted = False

        def submit(chunk: _Chunk) -> None:
            index = min(range(len(self.actors)), key=lambda i: (load[i], (i - chunk.attempts) % len(load)))
            node = self.actor_info[index]["node_id"]
            read = self._read.options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True),
            ).remote(chunk.entries, self.preprocessing, self.image_window, self.cwd, self.accept)
            pending[self.actors[index].score.remote(read)] = (chunk, index)
            load[index] += 1

        limit = self.in_flight_per_actor * len(self.actors)
        while True:
            while len(pending) < limit and (retry or not exhausted):
                if retry:
                    submit(retry.pop())
                    continue
                batch = list(islice(entries, self.chunk_files))
                if not batch:
                    exhausted = True
                    break
                submit(_Chunk(batch))
            if not pending:
                return
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                chunk, index = pending.pop(ref)
                load[index] -= 1
                try:
                    rows = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError,
                        ray.exceptions.ObjectLostError) as error:
                    chunk.attempts += 1
                    if chunk.attempts < self.max_attempts:
                        retry.append(chunk)
                        continue
                    rows = self._error_rows(chunk, f"failed {chunk.attempts} times on the Ray cluster: "
                                                   f"{str(error).splitlines()[0]}")
                yield rows, len(chunk.entries)

    def close(self) -> None:
        """Release the actors (and the local Ray, if this engine started it)."""
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []
        if self.started_ray:
            self.ray.shutdown()

