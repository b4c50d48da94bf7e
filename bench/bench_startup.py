"""Foundation figures: cold start (empty data directory → first 200 from /ready), warm start
(existing data directory), and the median /ready latency.

    .venv/bin/python bench/bench_startup.py [--ready-requests 500]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from geoserver.database.cluster import EmbeddedCluster, free_port  # noqa: E402


def start(data_dir: Path, port: int) -> tuple[subprocess.Popen, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDGOV_")}
    env.update(GRIDGOV_DATA_DIR=str(data_dir), GRIDGOV_LOG_LEVEL="WARNING")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "api", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.05)


def stop(proc: subprocess.Popen) -> float:
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ready-requests", type=int, default=500)
    args = ap.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="gridgov-bench-"))
    data_dir.chmod(0o755)
    port = free_port()
    try:
        proc, cold = start(data_dir, port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            c.get("/ready")
            samples = []
            for _ in range(args.ready_requests):
                t0 = time.perf_counter()
                c.get("/ready").raise_for_status()
                samples.append((time.perf_counter() - t0) * 1000)
        stop_s = stop(proc)
        proc, warm = start(data_dir, port)
        stop(proc)
    finally:
        EmbeddedCluster(data_dir).stop(mode="immediate")
        shutil.rmtree(data_dir, ignore_errors=True)
    samples.sort()
    print(f"cold start (initdb + migrate → first 200 /ready): {cold:6.2f} s")
    print(f"warm start (existing data directory):             {warm:6.2f} s")
    print(f"stop (SIGTERM → server and cluster down):         {stop_s:6.2f} s")
    median = statistics.median(samples)
    print(f"/ready latency over {len(samples)} requests: median {median:.2f} ms,"
          f" p99 {samples[int(len(samples) * 0.99) - 1]:.2f} ms")


if __name__ == "__main__":
    main()
