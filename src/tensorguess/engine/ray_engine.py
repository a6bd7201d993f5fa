"""--engine ray: bottleneck extraction and photo scoring as Ray Data map_batches over an actor pool.

Ray Data is the engine built for batch inference over files on a cluster: a pool of
actors, one loaded module each, sized to the cluster's CPUs, a worker that dies is
restarted and its batch retried (max_restarts / max_task_retries). Everything else
stays on the driver, as with the local engine: the feature store (written by the
driver only, keyed by content digest, so a retried batch cannot double an entry),
the split, the head, the report, guessDir's copies and its manifest.

Ray is imported here only, and this module only when --engine ray is chosen.
Ray's own output is kept off the user's terminal: workers' logs stay in the
cluster's log folder (log_to_driver=False), Ray Data's progress bars are off (ours
counts photos), Ray and Ray Data log errors only (their failures reach us as exceptions),
and the driver's core worker logs only fatal errors (RAY_BACKEND_LOG_LEVEL).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from tensorguess.data.images import Skipped, UnreadableImage, open_regular
from tensorguess.engine.actors import FeatureActor, ScoreActor
from tensorguess.engine.choice import EngineError, require_ray
from tensorguess.features.bottlenecks import Compute
from tensorguess.features.modules import VALUE_RANGES, ModuleSpec, is_local
from tensorguess.features.pipeline import progress

# Settings the workers must share with the driver to decode exactly as it does.
SHARED_ENV = ("TG_DECODE_BUDGET_MPIX", "TFHUB_CACHE_DIR")
CPUS_PER_ACTOR = 1
CONNECT_SECONDS = 10  # a head node's GCS port that does not answer within this is taken as absent


class RayEngine:
    """A connection to a Ray cluster (started on this machine when no address is given)."""

    def __init__(self, address: str | None, photos: str = "paths",
                 warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr)):
        self.ray = require_ray()
        self.photos = photos
        self.warn = warn
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage-stats prompt or upload
        # The driver's core worker logs notes (an actor's arguments in the object store...) to
        # stderr at ERROR; what really fails reaches us as an exception.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        if address:
            _require_answer(address)
        import tensorguess

        env = {name: os.environ[name] for name in SHARED_ENV if name in os.environ}
        env["TF_CPP_MIN_LOG_LEVEL"] = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            # ERROR: a cluster started here for the run would say it enabled token authentication.
            self.ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR,
                          ignore_reinit_error=True,
                          # The package travels to every node with the job: the nodes need
                          # our pinned requirements, not this checkout.
                          runtime_env={"py_modules": [str(Path(tensorguess.__file__).parent)],
                                       "env_vars": env})
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = address or "this machine"
            if "AuthenticationError" in _chain(error):
                raise EngineError(f"the Ray cluster at {where} wants its authentication token: set "
                                  "RAY_AUTH_MODE=token, with the token in ~/.ray/auth_token or "
                                  "RAY_AUTH_TOKEN (Ray does not look for it when given an "
                                  "address)") from error
            raise EngineError(f"cannot start or reach a Ray cluster at {where} "
                              f"({str(error).strip().splitlines()[0][:200]}); start one with "
                              "`ray start --head` and give its address with --ray_address or "
                              "RAY_ADDRESS") from error
        context = self.ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        for name in ("ray", "ray.data"):  # "Progress bars disabled"...
            logging.getLogger(name).setLevel(logging.ERROR)

    def close(self) -> None:
        self.ray.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def actors(self) -> int:
        """One actor per CPU of the cluster, each TensorFlow on one thread."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)) // CPUS_PER_ACTOR)

    def _dataset(self, paths: list[Path]):
        if self.photos == "bytes":  # the driver reads; workers need not see its files
            items = [{"path": _where(p), **_read_for_workers(p)} for p in paths]
        else:
            items = [{"path": _where(p)} for p in paths]
        return self.ray.data.from_items(items)

    def _map(self, paths: list[Path], actor, kwargs: dict, batch_size: int, ordered: bool):
        # Scores come back in the order asked for (guessDir's manifest); features in any
        # order, as batches finish (no batch waits behind a slower one).
        self.ray.data.DataContext.get_current().execution_options.preserve_order = ordered
        return self._dataset(paths).map_batches(
            actor, fn_constructor_kwargs=kwargs, batch_size=batch_size, batch_format="numpy",
            compute=self.ray.data.ActorPoolStrategy(size=min(self.actors(), -(-len(paths) // batch_size))),
            # A worker that dies (killed, out of memory, its node lost) is restarted and its
            # batch run again: Ray Data gives actor pools max_restarts=-1 and
            # max_task_retries=-1 unless told otherwise (actor_pool_map_operator.py; passing
            # them is deprecated in 2.60). The driver keys what comes back by path, so a
            # retried batch doubles nothing.
            num_cpus=CPUS_PER_ACTOR)

    def feature_batches(self, spec: ModuleSpec, batch_size: int = 32, trusted: bool = False) -> Compute:
        """The hook bottlenecks.extract calls with the paths missing from the store.

        Each actor checks the module it loads on its node as the driver did (`trusted`:
        train's --trust_graph).
        """
        value_range = next(name for name, bounds in VALUE_RANGES.items()
                           if tuple(bounds) == tuple(spec.value_range))
        # A local module by its absolute path (the workers' working folder is not ours), a
        # TF Hub URL as it is (each node downloads it into its own module cache).
        handle = spec.path if is_local(spec.handle) else spec.handle
        kwargs = {"handle": handle, "input_size": spec.input_size, "value_range": value_range,
                  "identity": spec.identity, "trusted": trusted, "cpus": CPUS_PER_ACTOR}

        def compute(paths: list[Path]):
            by_name = {_where(p): p for p in paths}
            seen: set[bytes] = set()
            for batch in self._map(paths, FeatureActor, kwargs, batch_size, ordered=False).iter_batches(
                    batch_size=None, batch_format="numpy"):
                entries = []
                for name, vector, error in zip(batch["path"], batch["vector"], batch["error"], strict=True):
                    name = bytes(name)
                    if name in seen:
                        continue  # a retried batch's second answer
                    seen.add(name)
                    entries.append((by_name[name], UnreadableImage(error) if error else vector))
                yield entries
            _require_all(by_name, seen)

        return compute

    def classifier(self, local, graph_path: Path, labels_path: Path, output_name: str,
                   trust_graph: bool, tta: bool) -> RayClassifier:
        return RayClassifier(self, local, graph_path, labels_path, output_name, trust_graph, tta)


class RayClassifier:
    """score/predict.Classifier's interface, scoring on the cluster; the driver keeps `local`
    (the checked graph, its labels and digest) for what is asked of it but scoring."""

    def __init__(self, engine: RayEngine, local, graph_path: Path, labels_path: Path,
                 output_name: str, trust_graph: bool, tta: bool):
        self.engine = engine
        self.local = local
        self.labels = local.labels
        self.digest = local.digest
        self.kwargs = {"graph": Path(graph_path).read_bytes(), "labels": Path(labels_path).read_bytes(),
                       "output_name": output_name, "trust_graph": trust_graph, "tta": tta}

    def __getattr__(self, name):  # graph, session, features, mode...: the driver's copy
        return getattr(self.local, name)

    def ranked(self, scores: np.ndarray):
        return self.local.ranked(scores)

    def close(self) -> None:
        self.local.close()
        self.engine.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def score_files(self, paths: list[Path], batch_size: int = 32, show_progress: bool = False,
                    with_features: bool = False) -> Iterator:
        """Classifier.score_files's results, in the same order, scored by the actor pool."""
        from tensorguess.score.predict import Scored

        paths = list(paths)
        if not paths:
            return
        kwargs = dict(self.kwargs, with_features=with_features, cpus=CPUS_PER_ACTOR)
        seen: set[int] = set()
        with progress(len(paths), "Classifying", enabled=show_progress) as bar:
            batches = self.engine._map(paths, ScoreActor, kwargs, batch_size, ordered=True).iter_batches(
                batch_size=None, batch_format="numpy")
            position = 0
            for batch in batches:
                for k, name in enumerate(batch["path"]):
                    if bytes(name) != _where(paths[position]):
                        raise EngineError(f"the cluster answered {os.fsdecode(name)!r} where "
                                          f"{str(paths[position])!r} "
                                          "was expected; run again")
                    seen.add(position)
                    path = paths[position]
                    position += 1
                    error = batch["error"][k]
                    if error:
                        yield Skipped(path, str(error))
                        continue
                    features = batch["features"][k] if with_features and batch["features"].shape[-1] else None
                    yield Scored(path, batch["scores"][k], features)
                bar.update(len(batch["path"]))
        if len(seen) != len(paths):
            raise EngineError(f"the cluster answered {len(seen)} of {len(paths)} photos; run again")


def _chain(error: BaseException) -> str:
    """The text of an exception and of those it came from (Ray wraps the reason twice)."""
    texts = []
    while error is not None and len(texts) < 5:
        texts.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    return "\n".join(texts)


def _require_answer(address: str) -> None:
    """EngineError at once when nothing listens at a HOST:PORT address: Ray itself would retry
    for minutes, printing a warning every few seconds."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # ray://..., auto: Ray's own business
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise EngineError(f"no Ray cluster answers at {address} ({error.strerror or error}); start "
                          "one with `ray start --head` there, or give its address with "
                          "--ray_address or RAY_ADDRESS") from error


def _where(path: Path) -> bytes:
    """The path as the workers open it: absolute (their working folder is not ours), and as
    bytes, so that a name that is not UTF-8 crosses Arrow's string columns unchanged."""
    return os.fsencode(os.path.abspath(path))


def _read_for_workers(path: Path) -> dict:
    """The file's bytes for the workers; for one the driver cannot read, why (as read_rgb says it)."""
    try:
        with open_regular(path) as handle:
            return {"data": handle.read(), "unread": ""}
    except OSError as error:
        return {"data": b"", "unread": f"cannot read the file ({error.strerror or error})"}


def _require_all(by_name: dict, seen: set) -> None:
    lost = len(by_name) - len(seen)
    if lost:
        raise EngineError(f"the Ray cluster returned no features for {lost} photo(s); run again "
                          "(those computed are stored)")
