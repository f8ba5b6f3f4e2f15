#!/usr/bin/python3
"""Check the shipped alert rules and Grafana dashboard against the real relay.

1. `promtool check rules` and `promtool test rules` on the alert rules
   (tests/monitoring/alerts_test.yml has a test for every alert).
2. The relay binary of this build is started with sink-file, a generation-1
   and a generation-2 agent stream frames through it (aeroarc-client), and
   /metrics is scraped.
3. Every query of the dashboard ($__rate_interval and $instance filled in)
   must parse (promtool check rules), name only metrics the relay serves or
   docs/operations.md documents, and, over the scraped series, return a
   non-empty result unless one of its metrics has no series yet on a
   relay that has seen no such traffic (a label family such as the
   commands' before the first command).

Usage: check_monitoring.py BUILD_DIR SOURCE_DIR
"""
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BUILD, SRC = sys.argv[1], sys.argv[2]
RULES = os.path.join(SRC, "packaging/monitoring/aeroarc-relay-alerts.yml")
RULES_TEST = os.path.join(SRC, "tests/monitoring/alerts_test.yml")
DASHBOARD = os.path.join(SRC, "packaging/monitoring/aeroarc-relay-dashboard.json")
OPERATIONS = os.path.join(SRC, "docs/operations.md")

FUNCTIONS = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "time", "by", "without", "on", "ignoring", "and", "or", "unless", "le", "offset",
    "label_values", "abs", "clamp_min", "clamp_max", "topk", "bottomk",
}


def run(*args):
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(args)}\n{p.stdout}{p.stderr}")
    return p.stdout


def free_port():
    """A free port below the kernel's ephemeral range, as the C harness picks
    them (tests/test_server.c): bind(0) hands out an ephemeral port that any
    connection of a test running beside this one may take before the relay
    binds it."""
    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(64):
        port = rng.randrange(10000, low) if low > 12000 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    sys.exit("FAIL: no free port below the ephemeral range")


def wait_for(pred, what, seconds=20):
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if pred():
            return
        time.sleep(0.05)  # polling a condition, with a deadline
    sys.exit(f"FAIL: timed out waiting for {what}")


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except Exception:
        return None, ""


def scrape_relay(tmp):
    grpc, http = free_port(), free_port()
    os.makedirs(os.path.join(tmp, "data"))
    cfg = os.path.join(tmp, "relay.ini")
    with open(cfg, "w") as f:
        f.write(f"[relay]\nlisten = 127.0.0.1:{grpc}\nplugin_dir = {BUILD}/plugins\nworkers = 2\n"
                f"[http]\nlisten = 127.0.0.1:{http}\n[log]\nlevel = warn\n"
                f"[sink:archive]\nplugin = sink-file\npath = {tmp}/data\n")
    relay = subprocess.Popen([os.path.join(BUILD, "aeroarc-relay"), "-c", cfg],
                             stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "log"), "w"))
    try:
        wait_for(lambda: http_get(http, "/readyz")[0] == 200, "the relay to be ready")
        client = os.path.join(BUILD, "aeroarc-client")
        for proto in ("seed", "multiplexed"):
            run(client, "--target", f"127.0.0.1:{grpc}", "stream", "--agent", f"mon-{proto}",
                "--frames", "20", "--protocol", proto)
        status, body = http_get(http, "/metrics")
        if status != 200:
            sys.exit("FAIL: /metrics did not answer")
        return body
    finally:
        relay.send_signal(signal.SIGTERM)
        if relay.wait(timeout=60) != 0:
            sys.exit(f"FAIL: the relay exited {relay.returncode}:\n" +
                     open(os.path.join(tmp, "log")).read()[-4000:])


def samples(text):
    """(name, labels-without-braces, value) of every sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        if m:
            out.append((m.group(1), m.group(3) or "", float(m.group(4))))
    return out


def names_in(expr):
    expr = re.sub(r'\b(by|without|on|ignoring)\s*\([^)]*\)', '', expr)
    expr = re.sub(r'\{[^}]*\}', '', expr)
    expr = re.sub(r'"[^"]*"', '', expr)
    expr = re.sub(r'\[[^\]]*\]', '', expr)
    return {n for n in re.findall(r'[a-zA-Z_:][a-zA-Z0-9_:]*', expr)
            if n not in FUNCTIONS and not re.fullmatch(r'\d.*', n)}


def family(name):
    return re.sub(r'_(bucket|sum|count)$', '', name)


# Sink series outside the aero_sink_* family, each named by SPEC.md: the
# reference relay's error counter (section 3) and sink-influxdb3's upstream
# aero_telemetry_* (section 13).
SINK_NAME_EXCEPTIONS = re.compile(r'^(aero_relay_sink_errors_total|aero_telemetry_[a-z0-9_]+)$')


def check_names(scraped, served, documented):
    """Issue 18's naming rules over what the relay really serves: every
    family is in docs/operations.md; a byte counter ends in _bytes_total;
    every series about a sink is an aero_sink_* one (bar SPEC's names) and
    carries both sink and plugin. Then every metric the alert rules name
    is served or documented (a renamed metric left in a rule would pass
    promtool's own tests, which feed the rule its old name)."""
    undocumented = served - documented
    if undocumented:
        sys.exit(f"FAIL: served but not in docs/operations.md: {sorted(undocumented)}")
    for n, labels, _ in scraped:
        f = family(n)
        if f.endswith("_total") and "bytes" in f and not f.endswith("_bytes_total"):
            sys.exit(f"FAIL: {f}: a byte counter's name ends in _bytes_total")
        keys = set(re.findall(r'([a-z_]+)="', labels))
        if "sink" in keys or f.startswith("aero_sink_"):
            if not f.startswith("aero_sink_") and not SINK_NAME_EXCEPTIONS.match(f):
                sys.exit(f"FAIL: {f}{{{labels}}}: a sink series outside the aero_sink_* family")
            if not {"sink", "plugin"} <= keys:
                sys.exit(f"FAIL: {f}{{{labels}}}: a sink series without sink and plugin labels")
    if not any(family(n) == "aero_sink_errors_total" for n, _, _ in scraped):
        sys.exit("FAIL: no aero_sink_errors_total series for the sink")
    rules = open(RULES).read()
    for expr in re.findall(r'^\s*expr:\s*(.*(?:\n\s{10,}.*)*)', rules, re.M):
        unknown = {n for n in names_in(expr)
                   if n != "up" and family(n) not in served | documented}
        if unknown:
            sys.exit(f"FAIL: alert rule names metrics neither served nor documented: "
                     f"{sorted(unknown)} in {expr!r}")


def check_declared(scraped):
    """The command results a rate should see from the first answer on are
    served at 0 before any command (a series born with its first increment
    hides that increment from rate())."""
    have = {(n, labels): v for n, labels, v in scraped}
    for key in [("aero_relay_commands_total", 'kind="set",result="OK"'),
                ("aero_relay_commands_total", 'kind="mission",result="OK"'),
                ("aero_relay_commands_total", 'kind="durable",result="ok"'),
                ("aero_relay_commands_total", 'kind="durable",result="complete"'),
                ("aero_relay_mission_deployments_total", 'result="STATUS_APPLIED"'),
                ("aero_relay_mission_deployments_total", 'result="delivery_failed"'),
                ("aero_relay_mission_deployments_total", 'result="wait_ended"')]:
        if have.get(key) != 0:
            sys.exit(f"FAIL: {key[0]}{{{key[1]}}} is not served at 0 before any command: "
                     f"{have.get(key)}")


def main():
    run("promtool", "check", "rules", RULES)
    run("promtool", "test", "rules", RULES_TEST)

    documented = set(re.findall(r'^\| `([a-z_:]+)`', open(OPERATIONS).read(), re.M))
    dash = json.load(open(DASHBOARD))
    if not any(v.get("type") == "datasource" for v in dash["templating"]["list"]):
        sys.exit("FAIL: the dashboard has no datasource variable")
    exprs = [(p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"]]

    tmp = tempfile.mkdtemp(prefix="aero-monitoring-")
    try:
        scraped = samples(scrape_relay(tmp))
        served = {family(n) for n, _, _ in scraped}
        check_names(scraped, served, documented)
        check_declared(scraped)
        # The scraped series as a minute-by-minute history: counters and
        # histograms grow by their value each minute, gauges stay.
        series = []
        for n, labels, v in scraped:
            lab = labels + ("," if labels else "") + 'instance="r1"'
            grow = n.endswith("_total") or n.endswith("_bucket") or n.endswith("_count") or \
                n.endswith("_sum")
            series.append({"series": f"{n}{{{lab}}}",
                           "values": f"{v}+{v}x10" if grow else f"{v}x10"})

        groups, tests = [], []
        for i, (title, expr) in enumerate(exprs):
            q = expr.replace("$__rate_interval", "5m").replace("$instance", ".*")
            unknown = {n for n in names_in(q) if family(n) not in served | documented}
            if unknown:
                sys.exit(f"FAIL: panel {title!r} names metrics neither served nor documented: "
                         f"{sorted(unknown)}")
            if all(family(n) in served for n in names_in(q)):
                groups.append({"alert": f"Q{i}", "expr": f"count({q}) > 0"})
                tests.append(i)
        rules = os.path.join(tmp, "dashboard-rules.yml")
        with open(rules, "w") as f:
            json.dump({"groups": [{"name": "dashboard", "rules": groups}]}, f)
        run("promtool", "check", "rules", rules)
        test = os.path.join(tmp, "dashboard-test.yml")
        with open(test, "w") as f:
            json.dump({"rule_files": [rules], "evaluation_interval": "1m", "tests": [{
                "interval": "1m", "input_series": series,
                "alert_rule_test": [{"eval_time": "8m", "alertname": f"Q{i}",
                                     "exp_alerts": [{"exp_labels": {}}]} for i in tests]}]}, f)
        run("promtool", "test", "rules", test)
        print(f"ok: 7 alerts tested; {len(exprs)} dashboard queries parsed, "
              f"{len(tests)} evaluated non-empty over the relay's real series")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


main()
