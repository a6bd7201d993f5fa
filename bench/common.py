"""What every benchmark shares: paths to ../shared, a machine description, result output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TENSORGUESS_SHARED", REPO.parent / "shared"))
MODULE = SHARED / "models" / "mobilenet_v1_100_224" / "feature_vector"
SIGN_DIGITS = SHARED / "datasets" / "sign-digits"
SUPERHEROES = SHARED / "datasets" / "superheroes"

sys.path.insert(0, str(REPO / "src"))


def quiet_tensorflow() -> None:
    from tensorguess import stderr_noise

    stderr_noise.quiet()


def parser(description: str) -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(description=description)
    parse.add_argument("--out", type=Path, help="also write the results as JSON to this file")
    return parse


def image_files(*folders: Path) -> list[Path]:
    """Every image of the given class folders, in a stable order."""
    from tensorguess.data.images import list_files

    return [path for folder in folders for path in list_files(folder)]


def warm_page_cache(paths: list[Path]) -> int:
    """Read every file once so no timed run pays for the disk; returns the bytes read."""
    return sum(len(path.read_bytes()) for path in paths)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    import tensorflow as tf

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "loadavg_at_start": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def finish(results: dict, out: Path | None) -> None:
    """Print the results and, when asked, write them as JSON."""
    results["machine"]["loadavg_at_end"] = os.getloadavg()[0]
    text = json.dumps(results, indent=1)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


def timed(function, *args, **kwargs) -> tuple[float, object]:
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def measured(function, *args, **kwargs) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process over all its threads, result) of one call.

    The CPU figure hardly moves when other processes share the cores; the wall one does.
    """
    cpu = time.process_time()
    wall, result = timed(function, *args, **kwargs)
    return wall, time.process_time() - cpu, result


@dataclass
class Rounds:
    """Wall and CPU seconds of each way, per round, and each way's last result."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    cpu_seconds: dict[str, list[float]] = field(default_factory=dict)
    results: dict[str, object] = field(default_factory=dict)

    def best(self) -> tuple[dict[str, float], dict[str, float]]:
        """The best wall and the best CPU seconds of each way."""
        return ({name: min(values) for name, values in self.seconds.items()},
                {name: min(values) for name, values in self.cpu_seconds.items()})


def alternate(ways: dict, rounds: int) -> Rounds:
    """Run every way once per round, in turn, so that all of them see the same load.

    `ways` maps a name to a function of the round number.
    """
    measured_rounds = Rounds()
    for round_ in range(rounds):
        for name, way in ways.items():
            wall, cpu, measured_rounds.results[name] = measured(way, round_)
            measured_rounds.seconds.setdefault(name, []).append(round(wall, 2))
            measured_rounds.cpu_seconds.setdefault(name, []).append(round(cpu, 2))
    return measured_rounds
