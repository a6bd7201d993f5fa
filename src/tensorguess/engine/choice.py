"""The --engine choice: `local` (this process) or `ray` (a Ray cluster), and Ray's absence.

Ray is an optional extra (requirements-ray.txt): nothing here imports it until `ray`
is chosen, so the default install never loads it.
"""

from __future__ import annotations

import os

from tensorguess.errors import TensorGuessError

ENGINES = ("local", "ray")
# How the photos reach the workers: they read the paths (a filesystem every node sees),
# or the driver reads the bytes and sends them through Ray's object store.
PHOTO_TRANSPORTS = ("paths", "bytes")
INSTALL_RAY = ".venv/bin/pip install -r requirements-ray.txt"
ADDRESS_ENV = "RAY_ADDRESS"


class EngineError(TensorGuessError):
    """The engine cannot run (Ray missing, no cluster at the address); the message says what to do."""


def require_ray():
    """The ray module, or EngineError naming the command that installs it."""
    try:
        import ray
        import ray.data  # noqa: F401  (ray[data], not bare ray)
    except ImportError as error:
        raise EngineError(f"--engine ray needs Ray, an optional extra that is not installed "
                          f"({error.name or error}); install it with {INSTALL_RAY} and run with the local "
                          "runtime (TG_RUNTIME=local: the Docker image has no Ray)") from error
    return ray


def ray_address(flag: str | None) -> str | None:
    """--ray_address, else RAY_ADDRESS, else None: ray.init then joins a cluster running on this
    machine, or starts one for the run."""
    return flag or os.environ.get(ADDRESS_ENV) or None


def check_choice(engine: str, photos: str) -> None:
    if engine not in ENGINES:
        raise EngineError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if photos not in PHOTO_TRANSPORTS:
        raise EngineError(f"--ray_photos must be one of {', '.join(PHOTO_TRANSPORTS)}, not {photos!r}")
