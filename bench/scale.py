"""Scale: train.sh (cold and warm) and guessDir.sh at 1k, 10k and 100k photos; time and peak RSS.

    python bench/scale.py [--sizes 1000 10000 100000] [--work /work/scale] [--steps 500]
                          [--runs cold warm checks sort] [--merge]
                          [--out bench/results/scale.json] [--plot docs/scale.png]

The photos are made by bench/scale_photos.py (real JPEGs of assorted sizes cut from
../shared's flowers, deterministic, nothing committed) into WORK/photos, and each
size's set is the first N of them, hard-linked into WORK/sets/N. For each size, with
the local runtime and MobileNet v1, page caches dropped before each run where this
machine lets us (it says whether):

  cold    `bash train.sh WORK/runs/N --image_dir WORK/sets/N` with no cache at all;
  warm    the same command again, nothing changed;
  checks  the same again with the bottlenecks cached but the data checks' stored work
          (neighbours.npz, out_of_fold.npz) removed: the near-duplicate search and the
          label check's cross-validation from scratch, as in a cold run;
  sort    `bash guessDir.sh WORK/runs/N WORK/sets/N WORK/sorted/N` into a new DEST.

`--runs` picks some of them (a later one needs the cache an earlier one left in
WORK); `--merge` keeps the other runs' figures already in --out.

Each run's figures: wall seconds, the peak RSS of the process (sampled from /proc every
50 ms, and ru_maxrss from wait4), and, from the console and train_log.json, the stages:
start-up (launch to "Module input": the runtime check, importing TensorFlow, loading
the module), the bottleneck pass, the data checks and split (until "Step 0"), the
training (train_log.json's training_seconds) and the rest (calibration, test, export,
report). The warm run's "overhead" is its wall time less its start-up and its training:
the issue's target is at most 15 s at 100k. Extraction throughput is the bottleneck
pass's own images/s as train.sh prints it; the cold runs' ratio across sizes is the
issue's "within 10%" figure.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import common
import scale_photos

TRAIN = common.REPO / "train.sh"
GUESS_DIR = common.REPO / "guessDir.sh"


def drop_page_caches() -> bool:
    """Empty the kernel's page cache (root on Linux only); whether it could."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def photo_set(work: Path, count: int) -> Path:
    """WORK/sets/COUNT: the first COUNT photos of WORK/photos, hard-linked (made once)."""
    folder = work / "sets" / str(count)
    done = folder / ".complete"
    if done.exists():
        return folder
    photos = work / "photos"
    scale_photos.make(photos, count)
    for _, _, source, target in scale_photos.jobs(photos, count):
        link = folder / source.parent.name / target.name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            os.link(target, link)
    done.touch()
    return folder


class Sampler(threading.Thread):
    """The RSS of one process every `interval` seconds, and its maximum."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kb, self.timeline = 0, []
        self.started = time.perf_counter()
        self.stopped = threading.Event()

    def run(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self.stopped.is_set():
            try:
                line = next(line for line in status.read_text().splitlines() if line.startswith("VmRSS"))
            except (OSError, StopIteration):
                return
            kb = int(line.split()[1])
            self.peak_kb = max(self.peak_kb, kb)
            self.timeline.append((round(time.perf_counter() - self.started, 2), kb // 1024))
            time.sleep(self.interval)


def run(command: list[str], env: dict[str, str]) -> dict:
    """Run a wrapper; its wall time, peak RSS and console lines with the second each came at."""
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, bufsize=1)
    sampler = Sampler(child.pid)
    sampler.start()
    lines = [(round(time.perf_counter() - started, 2), line.rstrip("\n")) for line in child.stdout]
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    sampler.stopped.set()
    sampler.join()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = "\n".join(text for _, text in lines[-15:])
        raise SystemExit(f"{' '.join(command)} failed ({code}):\n{tail}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(max(sampler.peak_kb, usage.ru_maxrss) / 1024),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1), "lines": lines,
            "rss_timeline": sampler.timeline[::max(1, len(sampler.timeline) // 300)]}  # 300 points


def first(lines, pattern: str) -> tuple[float, re.Match] | None:
    for at, text in lines:
        found = re.search(pattern, text)
        if found:
            return at, found
    return None


def train_stages(outcome: dict, log: dict) -> dict:
    """Seconds of each stage of one train.sh run, from its console and its train_log.json."""
    lines = outcome["lines"]
    module_at = first(lines, r"^Module input")[0]
    bottlenecks_at, found = first(
        lines, r"^Bottlenecks: (\d+) computed(?: \(([\d.]+) images/s\))?, (\d+) read")
    step0_at = first(lines, r": Step 0: Train accuracy")[0]
    training = log["training_seconds"]
    stages = {
        "startup": module_at,
        "bottlenecks": round(bottlenecks_at - module_at, 2),
        "checks_and_split": round(step0_at - bottlenecks_at, 2),
        "training": training,
        "rest": round(outcome["seconds"] - step0_at - training, 2),
    }
    return {"stages": stages, "computed": int(found.group(1)), "from_cache": int(found.group(3)),
            "extraction_images_per_s": float(found.group(2)) if found.group(2) else None,
            "overhead_s": round(outcome["seconds"] - module_at - training, 2)}


def measure(work: Path, count: int, steps: int, env: dict[str, str], runs: list[str],
            result: dict | None = None) -> dict:
    photos = photo_set(work, count)
    tf_dir = work / "runs" / str(count)
    sorted_dir = work / "sorted" / str(count)
    if "cold" in runs:
        shutil.rmtree(tf_dir, ignore_errors=True)
        tf_dir.mkdir(parents=True)
    shutil.rmtree(sorted_dir, ignore_errors=True)
    train = ["bash", str(TRAIN), str(tf_dir), "--image_dir", str(photos), "--tfhub_module",
             str(common.MODULE), "--how_many_training_steps", str(steps), "--random_seed", "1"]
    result = result or {}
    result.update(photos=count, bytes=sum(p.stat().st_size for p in photos.rglob("*.jpg")))
    for name in [run_ for run_ in ("cold", "warm", "checks") if run_ in runs]:
        if name == "checks":
            for stored in ("neighbours.npz", "out_of_fold.npz"):
                for path in (tf_dir / "bottlenecks").glob(f"*/{stored}"):
                    path.unlink()
        result[f"{name}_page_cache_dropped"] = drop_page_caches()
        conditions = when_and_load()
        outcome = run(train, env)
        log = json.loads((tf_dir / "train_log.json").read_text())
        result[name] = {key: outcome[key] for key in ("seconds", "peak_rss_mb", "cpu_seconds",
                                                      "rss_timeline")}
        result[name].update(conditions(), **train_stages(outcome, log))
        result[name]["test_accuracy"] = log["final_test_accuracy"]
        if name == "cold":  # the peak while the bottlenecks are computed, before the checks
            result[name]["extraction_peak_rss_mb"] = extraction_peak(result[name])
        print(f"{count} {name}: {json.dumps({k: v for k, v in result[name].items() if k != 'rss_timeline'})}",
              file=sys.stderr, flush=True)
    if "sort" not in runs:
        return result
    result["sort_page_cache_dropped"] = drop_page_caches()
    conditions = when_and_load()
    outcome = run(["bash", str(GUESS_DIR), str(tf_dir), str(photos), str(sorted_dir)], env)
    copied = sum(1 for _ in (sorted_dir / "guesses.jsonl").open())
    result["sort"] = {key: outcome[key] for key in ("seconds", "peak_rss_mb", "cpu_seconds", "rss_timeline")}
    result["sort"].update(conditions())
    result["sort"]["copied"] = copied
    result["sort"]["images_per_s"] = round(copied / outcome["seconds"], 1)
    print(f"{count} sort: {json.dumps({k: v for k, v in result['sort'].items() if k != 'rss_timeline'})}",
          file=sys.stderr, flush=True)
    shutil.rmtree(sorted_dir, ignore_errors=True)  # gigabytes of copies at 100k
    return result


def when_and_load():
    """Call before a run; what it returns, called after it, gives the run's date and load averages:
    with --merge the runs of one file come from different rounds, each under its own load."""
    started, load = time.strftime("%Y-%m-%d %H:%M"), os.getloadavg()[0]
    return lambda: {"started": started, "loadavg_at_start_and_end": [round(load, 2),
                                                                     round(os.getloadavg()[0], 2)]}


def extraction_peak(cold: dict) -> float:
    """The peak RSS (MB) of a cold run until its bottleneck pass ended, from its RSS timeline."""
    end = cold["stages"]["startup"] + cold["stages"]["bottlenecks"]
    return max(mb for at, mb in cold["rss_timeline"] if at <= end)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["photos"] for r in results["sizes"]]
    figure, (times, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    colour = {"cold": "C0", "warm": "C1", "checks": "C2", "sort": "C3"}
    for key, name, style in (("cold", "train.sh, cold", "o-"), ("warm", "train.sh, warm", "s-"),
                             ("checks", "train.sh, data checks from scratch", "d-"),
                             ("sort", "guessDir.sh", "^-")):
        times.plot(sizes, [r[key]["seconds"] for r in results["sizes"]], style, color=colour[key], label=name)
        if key != "cold":
            memory.plot(sizes, [r[key]["peak_rss_mb"] / 1024 for r in results["sizes"]], style,
                        color=colour[key], label=name)
    memory.plot(sizes, [r["cold"]["peak_rss_mb"] / 1024 for r in results["sizes"]], "o-",
                color=colour["cold"], label="train.sh, cold: the whole run")
    memory.plot(sizes, [extraction_peak(r["cold"]) / 1024 for r in results["sizes"]], "o:",
                color=colour["cold"], label="train.sh, cold: its bottleneck pass")
    times.plot(sizes, [r["warm"]["stages"]["startup"] + r["warm"]["stages"]["training"] + 15
                       for r in results["sizes"]], "k:", label="target: start-up + training + 15 s")
    memory.axhline(2.5e9 / 2**30, color="k", linestyle=":", label="target: 2.5 GB")
    for axis, title, unit in ((times, "wall time", "seconds"), (memory, "peak RSS", "GiB")):
        axis.set_xscale("log")
        axis.set_xlabel("photos")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    times.set_yscale("log")
    figure.suptitle("tensor-guess at scale (MobileNet v1, 2 cores, local runtime)", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parse.add_argument("--work", type=Path, default=Path("/work/scale"))
    parse.add_argument("--steps", type=int, default=500)
    parse.add_argument("--plot", type=Path, default=common.REPO / "docs" / "scale.png")
    parse.add_argument("--runs", nargs="+", default=["cold", "warm", "checks", "sort"],
                       choices=["cold", "warm", "checks", "sort"])
    parse.add_argument("--merge", action="store_true", help="keep the other runs' figures in --out")
    args = parse.parse_args()
    earlier = {}
    if args.merge and args.out and args.out.exists():
        earlier = {r["photos"]: r for r in json.loads(args.out.read_text())["sizes"]}
    env = {**os.environ, "TG_RUNTIME": "local", "TF_CPP_MIN_LOG_LEVEL": "2"}
    results = {"machine": {"nproc": os.cpu_count(), "cpu": common.cpu_model(),
                           "loadavg_at_start": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M"),
                           "page_cache_droppable": drop_page_caches(),
                           "memory_gb": round(os.sysconf("SC_PAGE_SIZE")
                                              * os.sysconf("SC_PHYS_PAGES") / 2**30)},
               "steps": args.steps, "sizes": []}
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for count in args.sizes:
        results["sizes"].append(measure(args.work, count, args.steps, env, args.runs, earlier.get(count)))
    results["sizes"] += [r for count, r in earlier.items() if count not in args.sizes]
    results["sizes"].sort(key=lambda r: r["photos"])
    small, large = results["sizes"][0], results["sizes"][-1]
    if "cold" in small and "cold" in large:
        results["cold_throughput_ratio_largest_over_smallest"] = round(
            large["cold"]["extraction_images_per_s"] / small["cold"]["extraction_images_per_s"], 3)
    if all(run_ in size for size in results["sizes"] for run_ in ("cold", "warm", "checks", "sort")):
        plot(results, args.plot)  # before write(), which folds the RSS timelines into text
    write(results, args.out)


def write(results: dict, out: Path | None) -> None:
    """common.finish's JSON, with each RSS timeline on one line (they are most of the figures)."""
    results["machine"]["loadavg_at_end"] = os.getloadavg()[0]
    timelines = []
    for size in results["sizes"]:
        for run_ in size.values():
            if isinstance(run_, dict) and "rss_timeline" in run_:
                timeline = run_["rss_timeline"]
                timelines.append(json.dumps(timeline[::max(1, len(timeline) // 300)]))
                run_["rss_timeline"] = f"@timeline{len(timelines) - 1}@"
    text = json.dumps(results, indent=1)
    for k, timeline in enumerate(timelines):
        text = text.replace(f'"@timeline{k}@"', timeline)
    print(text[:2000])
    if out:
        out.write_text(text + "\n")


if __name__ == "__main__":
    main()
