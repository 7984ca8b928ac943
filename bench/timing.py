#!/usr/bin/env python3
"""P5 and P7 of the benchmark harness: wall-clock timings that need finer resolution than a
shell loop of curl processes gives. Prints one RESULT line per measurement kind.

  python3 bench/timing.py startup COLLOQUY MODEL_DIR RUNS
  python3 bench/timing.py train COLLOQUY PROJECT_DIR RUNS
"""
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def startup(colloquy, model, runs):
    """Process start → first successful /status reporting a loaded model (P5)."""
    times = []
    for _ in range(runs):
        port = free_port()
        t0 = time.perf_counter()
        p = subprocess.Popen([colloquy, "run", "--enable-api", "-i", "127.0.0.1", "-p", str(port), "-m", model],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = t0 + 30
            while time.perf_counter() < deadline:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                    c.request("GET", "/status")
                    r = c.getresponse()
                    body = r.read()
                    if r.status == 200 and json.loads(body).get("is_ready"):
                        times.append(time.perf_counter() - t0)
                        break
                except OSError:
                    pass
                time.sleep(0.0005)
            else:
                raise SystemExit("colloquy did not become ready within 30 s")
        finally:
            p.kill()
            p.wait()
    print("RESULT p5 runs=%d median_ms=%.1f min_ms=%.1f max_ms=%.1f" % (
        runs, statistics.median(times) * 1e3, min(times) * 1e3, max(times) * 1e3))


def train(colloquy, project, runs):
    """`colloquy train --force` of a project, wall clock (P7)."""
    times = []
    out = tempfile.mkdtemp(prefix="colloquy-bench-train-")
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([colloquy, "train", "--force", "--domain", os.path.join(project, "domain.yml"),
                        "--data", os.path.join(project, "data"), "--config", os.path.join(project, "config.yml"),
                        "--out", out], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    print("RESULT p7 runs=%d median_ms=%.1f min_ms=%.1f max_ms=%.1f" % (
        runs, statistics.median(times) * 1e3, min(times) * 1e3, max(times) * 1e3))


if __name__ == "__main__":
    kind, colloquy, path, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    {"startup": startup, "train": train}[kind](colloquy, path, runs)
