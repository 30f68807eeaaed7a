#!/usr/bin/env python3
"""The benchmark of docs/performance.md ("The service benchmark").

Run it through scripts/bench.sh, which builds kmsd and installs OpenBao
first. This script starts everything it measures on loopback and in a
temporary directory (one `bao server -dev`, several `kmsd serve`, and
kmsd/examples/grpc_floor.rs, the bare tonic baseline), drives them with
`kmsd bench` and h2load, and prints one table with the issue's
targets. Every process it starts is stopped when it exits, however it
exits; PR_SET_PDEATHSIG stops the servers and load generators even if it
is killed (kill -9 leaves only the temporary directory).

This file holds the options, the plan of cells and the run; the rest is
in scripts/benchlib/ (procs, servers, measure, report).

Only the standard library: no pip dependencies.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

# The rest lives in scripts/benchlib/, next to this file, wherever it is run from.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import ROOT  # noqa: E402
from benchlib.measure import (  # noqa: E402
    HEALTH_BODY, HEALTH_PATH, Runner, cluster_figures, loadavg, machine_context, memory_kib,
    start_to_ready, stream_ratios)
from benchlib.procs import on_signal, stop_all  # noqa: E402
from benchlib.report import build_report  # noqa: E402
from benchlib.scale import scale_figures  # noqa: E402
from benchlib.servers import DIRECT_KEY, Floor, Kmsd, OpenBao, local_backend_toml, vault_backend_toml  # noqa: E402


def log(message):
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kmsd", default=os.path.join(ROOT, "target/release/kmsd"))
    parser.add_argument("--floor", default=os.path.join(ROOT, "target/release/examples/grpc_floor"),
                        help="the bare tonic baseline (kmsd/examples/grpc_floor.rs)")
    parser.add_argument("--bao", default=shutil.which("bao") or os.path.join(ROOT, ".venv/bin/bao"))
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 2 s cells, quick stream bench")
    parser.add_argument("--duration", type=float, help="measured seconds per cell (default 5; 2 with --quick)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per cell (default 1; 0.5 with --quick)")
    parser.add_argument("--rounds", type=int, help="rounds over all cells (default 3; 1 with --quick)")
    parser.add_argument("--starts", type=int, default=5, help="kmsd starts timed for start → ready")
    parser.add_argument("--audit-off", action="store_true", help="run the kmsd cells with the audit log off")
    parser.add_argument("--no-streams", action="store_true", help="skip the stream benchmark")
    parser.add_argument("--no-cluster", action="store_true",
                        help="skip the 3-node OpenBao cluster benchmark (about 2 minutes; 1 with --quick)")
    parser.add_argument("--scale-keys", type=int, metavar="N",
                        help="keys for the growth cells (issue 21; default 100000, 10000 with --quick; 0 skips them)")
    parser.add_argument("--cells", metavar="REGEX", help="run only the load cells whose name matches")
    parser.add_argument("--json", metavar="FILE", help="also save the raw results here")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.scale_keys is None:
        args.scale_keys = 10_000 if args.quick else 100_000

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, on_signal)
    tmp = tempfile.mkdtemp(prefix="kmsd-bench-")
    try:
        return run(args, tmp)
    finally:
        stop_all()
        if args.keep_temp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def start_servers(args, tmp, results):
    """OpenBao and the kmsd servers, all started and ready."""
    log(f"==> OpenBao dev server ({args.bao})")
    bao = OpenBao(args.bao, tmp)
    log(f"    {bao.address}")
    log("==> kmsd servers")
    audit = not args.audit_off
    kmsd = {
        "local": Kmsd(args.kmsd, tmp, "local", local_backend_toml(), audit=audit, tcp=True),
        "vault": Kmsd(args.kmsd, tmp, "vault", vault_backend_toml(bao, "bench-vault"), audit=audit),
    }
    if audit:
        kmsd["noaudit"] = Kmsd(args.kmsd, tmp, "noaudit", local_backend_toml(), audit=False)
    ikey = Kmsd(args.kmsd, tmp, "ikey", vault_backend_toml(bao, "bench-ikey", ikey=True), audit=audit)
    ok, why = ikey.check_config()
    results["ikey_note"] = None if ok else why
    if ok:
        kmsd["ikey"] = ikey
    else:
        log(f"    ikey: n/a (not in this build): {why}")
    if os.access(args.floor, os.X_OK):
        kmsd["floor"] = Floor(args.floor, tmp)
    else:
        results["skipped"]["floor"] = f"{args.floor} not built (scripts/bench.sh builds it)"
    for server in kmsd.values():
        server.start()
        metrics = f", metrics :{server.metrics_port}" if hasattr(server, "metrics_port") else ""
        log(f"    {server.name}: pid {server.pid}, {server.endpoint}{metrics}")
    return bao, kmsd


def plan_cells(args, tmp, runner, bao, kmsd, results):
    """[(cell name, function measuring it)], in the order of one round.
    Each ratio's two sides run next to each other, so a neighbour's load
    shifts both alike: per in-flight level, OpenBao direct then each kmsd;
    the cells of kmsd-local alone after."""
    conns = {1: 1, 16: 1, 64: 4}
    # Client runtime threads: at 1 and 16 in flight one thread keeps up,
    # and a second would only compete with the server for the two cores
    # (it moved p99 at 16 from about 1.3-1.7 ms to 1.0-1.3 ms); at 64 the
    # client needs the default (one per core) to keep up.
    threads = {1: ["--threads", "1"], 16: ["--threads", "1"], 64: []}
    local = kmsd["local"]
    plan = []
    for c in (1, 16, 64):
        plan.append((f"openbao-gdk-c{c}", lambda c=c: runner.kmsd_bench(
            ["--openbao-addr", bao.address, "--openbao-token-file", bao.token_file,
             "--key-id", DIRECT_KEY, "-c", str(c)] + threads[c])))
        for name in ("local", "vault", "ikey", "floor"):
            if name in kmsd and (name != "floor" or c > 1):
                plan.append((f"{name}-gdk-c{c}", lambda c=c, server=kmsd[name]: runner.kmsd_bench(
                    ["-c", str(c), "-m", str(conns[c])] + threads[c], server)))
    c64 = ["-c", "64", "-m", "4"]
    plan.append(("local-decrypt-c64", lambda: runner.kmsd_bench(c64, local, "decrypt")))
    plan.append(("local-mix-c64", lambda: runner.kmsd_bench(c64, local, "mix")))
    plan.append(("local-tcp-gdk-c64", lambda: runner.kmsd_bench(
        c64, local, endpoint=f"http://127.0.0.1:{local.tcp_port}")))
    if "noaudit" in kmsd:
        plan.append(("noaudit-gdk-c64", lambda: runner.kmsd_bench(c64, kmsd["noaudit"])))
    if shutil.which("h2load"):
        body = os.path.join(tmp, "gdk-request.bin")
        subprocess.run([args.kmsd, "bench", "--write-request-body", body], check=True)
        # 16 in flight on one connection, as `kmsd bench` runs it: the
        # p99 target with a client that takes little CPU.
        plan.append(("h2load-uds-c16", lambda: runner.h2load(local, body, 1, 16, tcp=False)))
        if "floor" in kmsd:
            plan.append(("h2load-floor-uds-c16", lambda: runner.h2load(kmsd["floor"], body, 1, 16, tcp=False)))
        # Health/Check then GenerateDataKey on the same kmsd (audit on, as
        # deployed), side by side in each round: what the KMS path costs
        # over a bare RPC of the same server.
        health = os.path.join(tmp, "health-request.bin")
        with open(health, "wb") as f:
            f.write(HEALTH_BODY)
        plan.append(("h2load-health-uds-c64", lambda: runner.h2load(
            local, health, 4, 16, tcp=False, path=HEALTH_PATH)))
        plan.append(("h2load-uds-c64", lambda: runner.h2load(local, body, 4, 16, tcp=False)))
        plan.append(("h2load-tcp-c64", lambda: runner.h2load(local, body, 4, 16, tcp=True)))
        if "floor" in kmsd:
            plan.append(("h2load-floor-uds-c64", lambda: runner.h2load(kmsd["floor"], body, 4, 16, tcp=False)))
    else:
        for name in ("h2load-uds-c16", "h2load-uds-c64", "h2load-tcp-c64"):
            results["skipped"][name] = "h2load not installed; scripts/setup-test-env.sh installs it"
    if args.cells:
        plan = [(name, measure) for name, measure in plan if re.search(args.cells, name)]
    return plan


def run(args, tmp):
    results = {
        "machine": machine_context(),
        "load_before": loadavg(),
        "parameters": {
            "quick": args.quick,
            "duration": args.duration,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "audit": not args.audit_off,
            "concurrency": [1, 16, 64],
        },
        "cells": {},
        "skipped": {},
        "rss": {},
    }
    bao, kmsd = start_servers(args, tmp, results)
    runner = Runner(args, tmp, bao)
    plan = plan_cells(args, tmp, runner, bao, kmsd, results)
    # VmHWM and VmRSS of each kmsd right after its 64-in-flight GDK cell.
    rss_after = {f"{name}-gdk-c64": kmsd[name] for name in ("local", "vault", "ikey") if name in kmsd}
    for r in range(args.rounds):
        for name, measure in plan:
            report = measure()
            report["loadavg_1m"] = loadavg()[0]
            results["cells"].setdefault(name, []).append(report)
            log(f"    round {r + 1}/{args.rounds} {name:<20} {report['rps']:>9,.0f} req/s  "
                f"p50 {report['p50_us']:>7,.0f} µs  p99 {report['p99_us']:>7,.0f} µs  "
                f"errors {report['errors']}")
            if name in rss_after:
                server = rss_after[name]
                mem = memory_kib(server.pid)
                hwm = max(results["rss"].get(server.name, {}).get("VmHWM", 0), mem["VmHWM"])
                results["rss"][server.name] = {"VmHWM": hwm, "VmRSS": mem["VmRSS"]}
    for server in kmsd.values():
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited during the run:\n{server.log_tail()}")
    stop_all()

    log(f"==> start → ready, {args.starts} × (first start, restart)")
    results["start_ready"] = start_to_ready(args.kmsd, tmp, args.starts)

    results["scale"] = {}
    if args.scale_keys > 0:
        results["scale"] = scale_figures(runner, tmp, args.scale_keys, args.quick)
        stop_all()

    results["streams"] = {}
    if not args.no_streams:
        log("==> cargo bench -p kms-client --bench stream" + (" (KMS_BENCH_QUICK=1)" if args.quick else ""))
        results["streams"] = stream_ratios(args.quick)
    results["cluster"] = []
    if not args.no_cluster:
        log("==> cargo bench -p kmsd-tests --bench cluster" + (" (KMS_BENCH_QUICK=1)" if args.quick else ""))
        results["cluster"] = cluster_figures(args.quick)
    results["load_after"] = loadavg()

    text, medians, summary = build_report(results)
    print(text)
    if args.json:
        results["medians"] = medians
        results["summary"] = summary
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")
        log(f"raw results in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
