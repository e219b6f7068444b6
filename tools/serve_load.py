"""Load generator for `stipple serve`: starts the server, sends N requests from C threads
(text completions, chat, images, or a mix), checks every answer, and prints the median
over repeats of p50 / p99 latency and throughput. Used for the figures in README.md.

    python3 tools/serve_load.py --stipple target/release/stipple --mix mixed
    python3 tools/serve_load.py --stipple target/release/stipple --mix greedy-text --server-args "--max-batch 1"

Needs `requests` (pip install requests).
"""

import argparse
import json
import shlex
import statistics
import subprocess
import threading
import time

import requests

TEXT = "stipple-mini-text"


def body_for(mix, i):
    """The i-th request of a mix: (kind, path, JSON body)."""
    greedy = {"temperature": 0.0}
    if mix == "greedy-text":
        return "completion", "/v1/completions", {"model": TEXT, "prompt": f"Once upon a time {i}", "max_tokens": 32, **greedy}
    if mix == "images":
        return "image", "/v1/images/generations", {"prompt": "a heart", "stipple": {"seed": i, "steps": 10}}
    kind = i % 4
    if kind == 0:
        return "image", "/v1/images/generations", {"prompt": "a heart", "stipple": {"seed": i, "steps": 10}}
    if kind == 1:
        return "chat", "/v1/chat/completions", {"model": TEXT, "messages": [{"role": "user", "content": f"Tell me {i}"}], "max_tokens": 32, **greedy}
    if kind == 2:
        return "completion", "/v1/completions", {"model": TEXT, "prompt": f"Once upon a time {i}", "max_tokens": 32, **greedy}
    return "sampled", "/v1/completions", {"model": TEXT, "prompt": f"Once upon a time {i}", "max_tokens": 32, "seed": i}


def valid(kind, r):
    if r.status_code != 200:
        return False
    v = r.json()
    if kind == "image":
        return len(v["data"][0]["b64_json"]) > 100
    if kind == "chat":
        return isinstance(v["choices"][0]["message"]["content"], str)
    return isinstance(v["choices"][0]["text"], str)


def run_once(base, mix, total, concurrency):
    lock, results, counter = threading.Lock(), [], iter(range(total))

    def worker():
        session = requests.Session()
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            kind, path, body = body_for(mix, i)
            t = time.perf_counter()
            r = session.post(base + path, json=body, timeout=600)
            took = time.perf_counter() - t
            ok = valid(kind, r)
            assert ok or r.status_code == 429, f"{kind}: {r.status_code} {r.text[:300]}"
            with lock:
                results.append((r.status_code, took))

    t = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    lat = sorted(took for code, took in results if code == 200)
    pct = lambda p: lat[round((len(lat) - 1) * p)]
    metrics = requests.get(base + "/metrics").text
    value = lambda name: float(next(l.split()[-1] for l in metrics.splitlines() if l.startswith(name + " ")))
    return {
        "ok": len(lat),
        "refused": sum(1 for code, _ in results if code == 429),
        "p50_s": pct(0.5),
        "p99_s": pct(0.99),
        "requests_per_s": len(lat) / wall,
        "text_requests_per_run": value("stipple_text_batched_requests_total") / max(value("stipple_text_runs_total"), 1),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stipple", required=True, help="the stipple binary (a release build)")
    ap.add_argument("--mix", default="mixed", choices=["mixed", "greedy-text", "images"])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--server-args", default="")
    a = ap.parse_args()
    runs = []
    for _ in range(a.repeat):
        server = subprocess.Popen([a.stipple, "serve", "--port", "0", "--quiet", "--queue", "256", *shlex.split(a.server_args)], stdout=subprocess.PIPE, text=True)
        try:
            base = server.stdout.readline().strip().rsplit(" ", 1)[-1]
            runs.append(run_once(base, a.mix, a.requests, a.concurrency))
        finally:
            server.terminate()
            server.wait()
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(json.dumps({"mix": a.mix, "requests": a.requests, "concurrency": a.concurrency, "server_args": a.server_args, "repeats": a.repeat, "median": median, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
