#!/usr/bin/env python3
"""Load test of `flint serve` on loopback: 1, 8 and 32 concurrent clients (standard library only).

  run_loadtest.py --flint .build/release/flint --model MODEL.flint [--levels 1 8 32] [--seconds 30]
                  [--rounds 3] [--max-tokens 32] [--max-batch 16] [--threads N] [--client wrk|python]
                  [--json OUT.json]

Starts `flint serve MODEL --port 0` itself (so it can read the server's peak RSS, VmHWM in /proc/PID/status),
then for each level runs that many clients for --seconds, each sending /v1/completions requests one after
another (prompts of 20-60 words from a fixed list; "min_tokens" = "max_tokens", so every request generates exactly
--max-tokens tokens whatever the weights). The clients are wrk connections by default (`--client wrk`: one wrk
thread, Tools/loadtest/completions.lua; wrk is Debian's `wrk` package), or Python threads (`--client python`,
standard library only). The clients run on the server's machine and take CPU from it; the CPU seconds they used
are printed per level (measured on a 2-core Zen 4, 10 s levels: wrk 0.06-0.10 s, the Python threads 0.14-0.34 s,
so neither takes more than a few percent of a core). With wrk, a few one-client requests per round take ~200 ms
instead of ~35 ms (p99; not seen with the Python client), which lowers wrk's one-client tokens/s: compare both. Per level it prints: requests, errors (non-200 or malformed), completion
tokens/s (all tokens of requests that finished within the level's window / the window), p50 / p99 request latency,
and the load average (`uptime`) before and after. With --rounds R the levels run R times, interleaved (1, 8, 32,
1, 8, 32, ...: a change of machine load hits every level alike), and each level's line gives the median over the
rounds with the min-max in parentheses; the 32 / 1 ratio is the ratio of the medians, with each round's own ratio
listed. At the end: peak RSS against the goal 1.15 x file + 128 MB and the
ratio of 32-client to 1-client tokens/s (goal >= 3). The server is stopped with SIGTERM and must exit 0.

A flan-t5-small-shaped int8 model: Tools/make_bench_checkpoint.py --shape flan-t5-small --out DIR, then
`flint convert DIR -o small-int8.flint` with the release build.
"""
import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import shutil
import time
from pathlib import Path

WORDS = ("the quick brown fox jumps over a lazy dog while seven old men walk to the market and buy bread milk "
         "rice fish under a hot sun near the green river where birds sing in tall trees").split()


def prompt(i):
    n = 20 + (i * 7) % 41
    body = " ".join(WORDS[(i + k * 3) % len(WORDS)] for k in range(n))
    return f"summarize: {body}."


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1)))))
    return ordered[k]


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def peak_rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def start_server(args):
    command = [args.flint, "serve", args.model, "--port", "0", "--max-batch", str(args.max_batch),
               "--max-queue", str(max(64, 2 * max(args.levels)))]
    if args.threads:
        command += ["--threads", str(args.threads)]
    # The port is in the first log line; stderr (a line per request) is then drained by a thread.
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    port = None
    lines = []
    for line in process.stderr:
        lines.append(line)
        m = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        process.wait()
        sys.exit("flint serve did not start:\n" + "".join(lines))
    drained = threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True)
    drained.start()
    return process, port


def client_cpu_seconds():
    """CPU seconds (user + system) used so far by this process and its finished children (wrk, when waited)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_level_wrk(port, clients, seconds, max_tokens, offset):
    script = Path(__file__).resolve().parent / "completions.lua"
    command = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "600s", "-s", str(script),
               f"http://127.0.0.1:{port}", "--", str(max_tokens), str(offset)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = re.search(r"^FLINT_RESULT (\{.*\})$", output, re.MULTILINE)
    if not found:
        sys.exit("wrk printed no FLINT_RESULT line:\n" + output)
    r = json.loads(found.group(1))
    window = r["duration_us"] / 1e6
    # wrk stops at the end of the window: requests still in flight then are neither counted nor timed.
    return {
        "clients": clients,
        "requests": r["requests"],
        "errors": r["bad_responses"] + r["socket_errors"],
        "tokens_per_second": r["tokens"] / window,
        "p50_seconds": r["p50_us"] / 1e6,
        "p99_seconds": r["p99_us"] / 1e6,
        "window_seconds": window,
    }


def run_level(port, clients, seconds, max_tokens, offset):
    results = []  # (latency seconds, completion tokens, ok, finished at)
    lock = threading.Lock()
    start = time.monotonic()
    stop_at = start + seconds

    def client(c):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        i = offset + c * 1000
        while time.monotonic() < stop_at:
            body = json.dumps({"prompt": prompt(i), "max_tokens": max_tokens, "min_tokens": max_tokens})
            t0 = time.monotonic()
            ok, tokens = False, 0
            try:
                connection.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                data = response.read()
                if response.status == 200:
                    tokens = json.loads(data)["usage"]["completion_tokens"]
                    ok = tokens == max_tokens
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            t1 = time.monotonic()
            with lock:
                results.append((t1 - t0, tokens, ok, t1))
            i += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = time.monotonic()
    # Throughput over the whole level, waiting for the last requests included (they finish after stop_at).
    window = end - start
    latencies = [r[0] for r in results if r[2]]
    tokens = sum(r[1] for r in results if r[2])
    return {
        "clients": clients,
        "requests": len(results),
        "errors": sum(1 for r in results if not r[2]),
        "tokens_per_second": tokens / window,
        "p50_seconds": percentile(latencies, 50),
        "p99_seconds": percentile(latencies, 99),
        "window_seconds": window,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flint", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=1, help="run the levels this many times, interleaved")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--client", choices=["wrk", "python"], default="wrk",
                        help="wrk connections (default; Debian's wrk package) or Python threads")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.client == "wrk" and shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk (or use --client python)")
    measure = run_level_wrk if args.client == "wrk" else run_level

    process, port = start_server(args)
    runs = {clients: [] for clients in args.levels}  # clients -> one row per round
    try:
        # Warm-up: the first requests page the model in.
        measure(port, 1, 2, args.max_tokens, 999_000)
        for r in range(args.rounds):
            for n, clients in enumerate(args.levels):
                before, cpu = load_average(), client_cpu_seconds()
                row = measure(port, clients, args.seconds, args.max_tokens, (r * len(args.levels) + n) * 100_000)
                row["load_before"], row["load_after"] = before, load_average()
                row["client_cpu_seconds"] = client_cpu_seconds() - cpu
                runs[clients].append(row)
                print(f"{'' if args.rounds == 1 else f'round {r + 1}: '}{clients:3d} clients: "
                      f"{row['requests']:5d} requests, {row['errors']} errors, "
                      f"{row['tokens_per_second']:8.1f} tokens/s, p50 {row['p50_seconds'] * 1000:7.0f} ms, "
                      f"p99 {row['p99_seconds'] * 1000:7.0f} ms, clients used {row['client_cpu_seconds']:.1f} CPU s  "
                      f"(load {row['load_before']} -> {row['load_after']})",
                      flush=True)
        rss = peak_rss_bytes(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            status = "killed after 30 s"
    rows = []
    for clients in args.levels:
        rounds = runs[clients]
        if not rounds:
            continue
        rate = [x["tokens_per_second"] for x in rounds]
        row = {
            "clients": clients,
            "requests": sum(x["requests"] for x in rounds),
            "errors": sum(x["errors"] for x in rounds),
            "tokens_per_second": statistics.median(rate),
            "tokens_per_second_min": min(rate), "tokens_per_second_max": max(rate),
            "p50_seconds": statistics.median(x["p50_seconds"] for x in rounds),
            "p99_seconds": statistics.median(x["p99_seconds"] for x in rounds),
            "rounds": rounds,
        }
        rows.append(row)
        if args.rounds > 1:
            print(f"median of {len(rounds)} rounds, {clients:3d} clients: {row['requests']:5d} requests, "
                  f"{row['errors']} errors, {row['tokens_per_second']:8.1f} tokens/s "
                  f"({min(rate):.1f}-{max(rate):.1f}), p50 {row['p50_seconds'] * 1000:7.0f} ms, "
                  f"p99 {row['p99_seconds'] * 1000:7.0f} ms")
    size = os.path.getsize(args.model)
    goal = 1.15 * size + 128e6
    summary = {
        "model": args.model, "file_bytes": size, "peak_rss_bytes": rss, "rss_goal_bytes": goal,
        "rss_ok": rss <= goal, "levels": rows, "max_tokens": args.max_tokens, "max_batch": args.max_batch,
        "server_exit": status, "cpus": os.cpu_count(), "rounds": args.rounds, "client": args.client,
    }
    by_clients = {r["clients"]: r for r in rows}
    if 1 in by_clients and 32 in by_clients and by_clients[1]["tokens_per_second"] > 0:
        summary["speedup_32_vs_1"] = by_clients[32]["tokens_per_second"] / by_clients[1]["tokens_per_second"]
        summary["speedup_32_vs_1_per_round"] = [
            b["tokens_per_second"] / a["tokens_per_second"] if a["tokens_per_second"] > 0 else float("nan")
            for a, b in zip(runs[1], runs[32])]
    print(f"peak RSS {rss / 1e6:.1f} MB (file {size / 1e6:.1f} MB; goal <= {goal / 1e6:.1f} MB: "
          f"{'ok' if summary['rss_ok'] else 'MISSED'})")
    if "speedup_32_vs_1" in summary:
        s = summary["speedup_32_vs_1"]
        each = ""
        if args.rounds > 1:
            each = " (rounds: " + ", ".join(f"{x:.2f}x" for x in summary["speedup_32_vs_1_per_round"]) + ")"
        print(f"32 clients / 1 client tokens/s: {s:.2f}x{each} (goal >= 3: {'ok' if s >= 3 else 'MISSED'})")
    print(f"server exit status after SIGTERM: {status}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    errors = sum(r["errors"] for r in rows)
    sys.exit(0 if errors == 0 and status == 0 else 1)


if __name__ == "__main__":
    main()
