"""serve.sh under load: requests/s and latency with 1, 8 and 32 clients, beside guessDir's images/s.

    python bench/serve.py [--out bench/results/serve.json] [--images 500] [--rounds 2]

Trains a classifier on the superheroes set (200 steps, not timed), copies --images
sign-digits photos into a folder (the photos of bench/guessdir.py), starts
`python -m tensorguess serve DIR --port 0` on 127.0.0.1 (a process of its own, as a
user runs it), then, in turn, --rounds times:
  guessDir   predict.Classifier + sort.folder.sort over the folder, in this process
             (the graph's loading not timed: the server has loaded its own).
  N clients  N threads, each with one keep-alive HTTP connection, POST /predict the
             photos' bytes, each photo once per level, N = 1, 8 and 32.
Each client's socket has TCP_NODELAY, as a browser's, curl's or urllib3's. Each request's
latency is timed from its send to the last byte of its answer. The clients share the
machine's cores with the server (their own CPU seconds are given), so the requests/s are
a floor; the server's own CPU seconds per request (from /proc) are given beside
guessDir's per image, a figure that hardly moves with the machine's load. /healthz's
counters give the mean batch per level.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common
from guessdir import pick_photos, train_classifier

LEVELS = (1, 8, 32)


def start_server(work: Path, log: Path) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": str(common.REPO / "src")}
    # The queue holds every client's photo: the benchmark measures speed, not refusals.
    process = subprocess.Popen([sys.executable, "-m", "tensorguess", "serve", str(work), "--port", "0",
                                "--queue_size", "256"],
                               stdout=subprocess.PIPE, stderr=open(log, "w"), text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    first = lines.get(timeout=300)
    if not first.startswith("Serving "):
        raise SystemExit(f"the server did not start: {first!r}; see {log}")
    return process, int(first.split(" at ")[1].split()[0].rstrip("/").rsplit(":", 1)[1])


def health(port: int) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", "/healthz")
    answer = json.loads(connection.getresponse().read())
    connection.close()
    return answer


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(port: int, bodies: list[bytes], clients: int, server_pid: int) -> dict:
    """Every body POSTed once by `clients` threads on keep-alive connections: rates and latencies."""
    work: queue.Queue = queue.Queue()
    for body in bodies:
        work.put(body)
    latencies: list[float] = []
    failures = []

    def client(_):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        connection.connect()
        # http.client sends the headers and the body in two writes: without TCP_NODELAY the
        # second waits for the server's delayed ACK (40 ms a request). Browsers, curl and
        # urllib3 set it; so does the server's side (asyncio).
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        mine = []
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                break
            started = time.perf_counter()
            connection.request("POST", "/predict", body, {"Content-Type": "image/jpeg"})
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                failures.append(response.status)
        connection.close()
        latencies.extend(mine)

    before = health(port)
    server_cpu = cpu_seconds(server_pid)
    cpu = time.process_time()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - started
    client_cpu = time.process_time() - cpu
    server_cpu = cpu_seconds(server_pid) - server_cpu
    after = health(port)
    latencies.sort()
    batches = after["batches"] - before["batches"]
    return {
        "requests": len(latencies), "failed": len(failures), "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
        "p95_ms": round(1000 * latencies[int(len(latencies) * 0.95)], 1),
        "mean_batch": round((after["photos_scored"] - before["photos_scored"]) / max(batches, 1), 1),
        "client_cpu_s": round(client_cpu, 2),
        # The server's CPU per photo hardly moves when other work shares the cores; the wall figures do.
        "server_cpu_ms_per_request": round(1000 * server_cpu / max(len(latencies), 1), 2),
    }


def guessdir_rate(work: Path, source: Path, dest: Path) -> dict:
    from tensorguess.score.predict import Classifier
    from tensorguess.sort import folder

    shutil.rmtree(dest, ignore_errors=True)
    with Classifier(work / "retrained_graph.pb", work / "retrained_labels.txt") as classifier:
        wall, cpu, summary = common.measured(folder.sort, classifier, source, dest, warn=lambda line: None)
    return {"images": summary.copied, "seconds": round(wall, 2),
            "images_per_s": round(summary.copied / wall, 1), "cpu_s": round(cpu, 2),
            "cpu_ms_per_image": round(1000 * cpu / max(summary.copied, 1), 2)}


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--images", type=int, default=500)
    parse.add_argument("--rounds", type=int, default=2)
    args = parse.parse_args()
    common.quiet_tensorflow()
    machine = common.machine()
    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        work = temp / "tf_files"
        work.mkdir()
        train_seconds = train_classifier(work)
        source = temp / "photos"
        pick_photos(source, args.images)
        bodies = [path.read_bytes() for path in sorted(source.iterdir())]
        server, port = start_server(work, temp / "server.log")
        try:
            for body in bodies[:32]:  # warm: the server's first batches, the page cache
                load(port, [body], 1, server.pid)
            rounds: list[dict] = []
            for _ in range(args.rounds):
                measured = {"guessdir": guessdir_rate(work, source, temp / "sorted")}
                for clients in LEVELS:
                    measured[f"clients_{clients}"] = load(port, bodies, clients, server.pid)
                rounds.append(measured)
                print(json.dumps(measured), file=sys.stderr, flush=True)
        finally:
            server.terminate()
            server.wait(60)
    best = {name: max((r[name] for r in rounds),
                      key=lambda m: m.get("requests_per_s", m.get("images_per_s")))
            for name in rounds[0]}
    guessdir = best["guessdir"]["images_per_s"]
    results = {
        "machine": machine,
        "photos": f"{len(bodies)} sign-digits JPEGs (100x100), each once per level",
        "train_seconds": round(train_seconds, 1),
        "rounds": rounds,
        "best": best,
        "ratio_to_guessdir": {name: round(best[name]["requests_per_s"] / guessdir, 2)
                              for name in best if name != "guessdir"},
    }
    common.finish(results, args.out)


if __name__ == "__main__":
    main()
