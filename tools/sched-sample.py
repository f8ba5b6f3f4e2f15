#!/usr/bin/env python3
"""sched-sample.py - where a process's threads spend a run: on a CPU, or
runnable and waiting for one (the kernel's /proc/PID/task/TID/schedstat:
time on CPU, time waiting on a run queue, in ns).

    tools/sched-sample.py PID [--interval S] [--window S]

Samples every thread of PID every S seconds (default 0.05) until PID
exits or SIGINT/SIGTERM, then prints one JSON line: for each thread name
(threads of the same name added up, e.g. "aero-grpc-0"), CPU seconds and
run-queue wait seconds over the whole run and over the busiest window
(default 1 s: the one in which the process used the most CPU), as
percentages of that window's wall time.

A thread that waits on a run queue as long as it runs is short of CPU,
not of work: what a connect storm's latency on a host shared with its
load generator is made of (docs/benchmarks.md). Not a test; never
installed.
"""
import json
import os
import signal
import sys
import time


def sample(pid):
    """{tid: (name, cpu_ns, wait_ns)} for the threads alive now."""
    out = {}
    base = "/proc/%d/task" % pid
    try:
        tids = os.listdir(base)
    except OSError:
        return None
    for tid in tids:
        try:
            with open("%s/%s/comm" % (base, tid)) as f:
                name = f.read().strip()
            with open("%s/%s/schedstat" % (base, tid)) as f:
                cpu, wait, _ = f.read().split()
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
        out[tid] = (name, int(cpu), int(wait))
    return out


def by_name(first, last):
    """Per thread name: (cpu_ns, wait_ns) accrued between two samples
    (a thread born in between counts from zero)."""
    acc = {}
    for tid, (name, cpu, wait) in last.items():
        c0, w0 = (first[tid][1], first[tid][2]) if tid in first else (0, 0)
        a = acc.setdefault(name, [0, 0])
        a[0] += cpu - c0
        a[1] += wait - w0
    return acc


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 2
    pid = int(args[0])
    interval = float(args[args.index("--interval") + 1]) if "--interval" in args else 0.05
    window = float(args[args.index("--window") + 1]) if "--window" in args else 1.0
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(1))
    samples = []  # (t, {tid: ...})
    while not stop:
        s = sample(pid)
        if s is None:
            break
        samples.append((time.monotonic(), s))
        time.sleep(interval)
    if len(samples) < 2:
        print(json.dumps({"error": "fewer than two samples"}))
        return 1
    # The busiest window: the pair of samples about `window` apart with
    # the most CPU between them.
    best, j = None, 0
    for i in range(len(samples)):
        while j < len(samples) - 1 and samples[j][0] - samples[i][0] < window:
            j += 1
        if j <= i:
            break
        acc = by_name(samples[i][1], samples[j][1])
        cpu = sum(a[0] for a in acc.values())
        if best is None or cpu > best[0]:
            best = (cpu, samples[j][0] - samples[i][0], acc)
    whole = by_name(samples[0][1], samples[-1][1])
    wall = samples[-1][0] - samples[0][0]

    def pct(acc, secs):
        return {n: {"cpu_pct": round(100 * a[0] / 1e9 / secs, 1),
                    "runq_wait_pct": round(100 * a[1] / 1e9 / secs, 1)}
                for n, a in sorted(acc.items()) if a[0] or a[1]}

    print(json.dumps({
        "seconds": round(wall, 2),
        "total": {n: {"cpu_s": round(a[0] / 1e9, 3), "runq_wait_s": round(a[1] / 1e9, 3)}
                  for n, a in sorted(whole.items()) if a[0] or a[1]},
        "busiest_window_s": round(best[1], 2),
        "busiest": pct(best[2], best[1]),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
