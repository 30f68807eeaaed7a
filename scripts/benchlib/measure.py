"""Measurement: one load cell (Runner: `kmsd bench` or h2load, with the
CPU of the server, the client and OpenBao over the same window), start →
ready timing, kms-client's stream ratios, the /proc readers behind them
(cpu_ticks, memory_kib, loadavg) and the machine context of the report.
"""

import datetime
import json
import os
import re
import resource
import shutil
import subprocess
import time

from . import ROOT
from .procs import free_port, ready_once, set_pdeathsig, spawn, stop
from .servers import Kmsd, local_backend_toml

GDK_PATH = "/kms.v1.KeyManagement/GenerateDataKey"
# The bare RPC on the same kmsd: no policy, audit, backend or crypto.
HEALTH_PATH = "/grpc.health.v1.Health/Check"
# A gRPC frame holding an empty HealthCheckRequest (service "": overall).
HEALTH_BODY = b"\x00\x00\x00\x00\x00"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- /proc

def cpu_ticks(pid):
    """utime + stime of the whole process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def memory_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
    return out


def children_cpu_s():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_context():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    commit = subprocess.run(
        ["git", "-C", ROOT, "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kib / 1048576, 1),
        "kernel": os.uname().release,
        "commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# ---------------------------------------------------------------- load

def percentile(sorted_values, per_mille):
    """Nearest rank, as `kmsd bench` computes it."""
    if not sorted_values:
        return 0.0
    rank = -(-per_mille * len(sorted_values) // 1000)
    return float(sorted_values[min(max(rank, 1), len(sorted_values)) - 1])


class Runner:
    def __init__(self, args, tmp, bao):
        self.args = args
        self.tmp = tmp
        self.kmsd = args.kmsd
        self.bao = bao

    def kmsd_bench(self, extra, server=None, workload="gdk", endpoint=None):
        """One `kmsd bench --json` run; with a server, also its CPU and the
        requests it served over the same window (warm-up included)."""
        cmd = [self.kmsd]
        if server is not None:
            cmd += ["--endpoint", endpoint or server.endpoint]
        cmd += [
            "bench", "--json",
            "--duration", str(self.args.duration),
            "--warmup", str(self.args.warmup),
        ] + extra
        if server is not None:
            cmd += ["--workload", workload]
        return self._measure(cmd, server, lambda out: json.loads(out))

    def h2load(self, server, body, conns, streams, tcp, path=GDK_PATH):
        log_file = os.path.join(self.tmp, "h2load.log")
        cmd = [
            "h2load", "-D", f"{round(self.args.duration * 1000)}ms",
            "--warm-up-time", f"{round(self.args.warmup * 1000)}ms",
            "-c", str(conns), "-m", str(streams),
            "-d", body,
            "-H", "content-type: application/grpc",
            "-H", "te: trailers",
            "--log-file", log_file,
        ]
        if tcp:
            cmd.append(f"http://127.0.0.1:{server.tcp_port}{path}")
        else:
            cmd += [f"--base-uri=unix:{server.socket}", f"http://localhost{path}"]

        def parse(out):
            rps = float(re.search(r"finished in [0-9.]+m?s, ([0-9.]+) req/s", out).group(1))
            req = re.search(
                r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                r"(\d+) failed, (\d+) errored, (\d+) timeout",
                out,
            )
            status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
            latencies = []
            with open(log_file) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3:
                        latencies.append(int(parts[2]))
            os.unlink(log_file)
            latencies.sort()
            return {
                "concurrency": conns * streams,
                "connections": conns,
                "duration_secs": self.args.duration,
                "requests": int(req.group(4)),
                "errors": int(req.group(5)) + int(req.group(6)) + int(req.group(7)),
                "http_2xx": int(status.group(1)),
                "rps": rps,
                "p50_us": percentile(latencies, 500),
                "p90_us": percentile(latencies, 900),
                "p99_us": percentile(latencies, 990),
                "p999_us": percentile(latencies, 999),
                "max_us": float(latencies[-1]) if latencies else 0.0,
            }

        return self._measure(cmd, server, parse)

    def _measure(self, cmd, server, parse):
        bao_pid = self.bao.proc.pid
        if server is not None:
            served0 = server.counters()
            ticks0 = cpu_ticks(server.pid)
        bao0 = cpu_ticks(bao_pid)
        client0 = children_cpu_s()
        wall0 = time.monotonic()
        out = subprocess.run(
            cmd, capture_output=True, text=True, check=False, preexec_fn=set_pdeathsig
        )
        wall = time.monotonic() - wall0
        client_cpu = children_cpu_s() - client0
        bao_ticks = cpu_ticks(bao_pid) - bao0
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}{out.stdout}")
        report = parse(out.stdout)
        report["client_cpu_pct"] = 100.0 * client_cpu / wall
        report["openbao_cpu_pct"] = 100.0 * bao_ticks / CLK_TCK / wall
        ticks = 0
        if server is None:
            # OpenBao direct: everything the client sent, warm-up included.
            sent = report["requests"] + report["errors"] + report["warmup_requests"]
        else:
            ticks = cpu_ticks(server.pid) - ticks0
            served1 = server.counters()
            ok = served1.get("OK", 0) - served0.get("OK", 0)
            backend = served1["backend"] - served0["backend"]
            failed = sum(served1.values()) - sum(served0.values()) - ok - backend
            report["server_ok"] = int(ok)
            report["server_failed"] = int(failed)
            report["server_cpu_pct"] = 100.0 * ticks / CLK_TCK / wall
            report["server_cpu_us_per_req"] = (ticks / CLK_TCK * 1e6 / ok) if ok else None
            report["backend_calls_per_req"] = (backend / ok) if ok else None
            sent = ok
            server.truncate_audit()
        # OpenBao's CPU per request answered to the client (it idles
        # during the kmsd-local cells; this matters for the others).
        report["openbao_cpu_us_per_req"] = (bao_ticks / CLK_TCK * 1e6 / sent) if sent else None
        # Everything this cell cost the machine (client, kmsd, OpenBao):
        # when the cores are the bottleneck, ratios follow this.
        total_s = (ticks + bao_ticks) / CLK_TCK + client_cpu
        report["total_cpu_us_per_req"] = (total_s * 1e6 / sent) if sent else None
        return report


def start_to_ready(kmsd, tmp, starts):
    """Milliseconds from spawning `kmsd serve` (local backend) until
    /health/ready answers 200, polled every millisecond: on a new key
    directory (first start: creates the default key) and again on the same
    directory (keys created by the previous start)."""
    first, again = [], []
    for i in range(starts):
        server = Kmsd(kmsd, tmp, f"ready-{i}", local_backend_toml(), audit=False)
        for samples in (first, again):
            # Its own metrics port each time: a port in TIME_WAIT cannot
            # be rebound at once.
            port = free_port()
            cmd = [kmsd, "serve", "--config", server.config, "--metrics-listen", f"127.0.0.1:{port}"]
            logfile = server.log_path
            t0 = time.perf_counter()
            proc = spawn(cmd, logfile, die_with_parent=False)
            while True:
                if ready_once(port):
                    samples.append((time.perf_counter() - t0) * 1000.0)
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"kmsd exited before ready:\n{server.log_tail()}")
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError(f"kmsd not ready after 30 s:\n{server.log_tail()}")
                time.sleep(0.001)
            stop(proc)
        shutil.rmtree(server.dir, ignore_errors=True)
    return {"first_start_ms": first, "restart_ms": again}


def cargo_bench(package, bench, quick, **env_extra):
    """The stdout of `cargo bench -q -p <package> --bench <bench>`; raises with
    its output when it fails."""
    env = dict(os.environ, **env_extra)
    if quick:
        env["KMS_BENCH_QUICK"] = "1"
    out = subprocess.run(
        ["cargo", "bench", "-q", "-p", package, "--bench", bench],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"cargo bench -p {package} --bench {bench} failed:\n"
                           f"{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def stream_ratios(quick):
    """The encrypt/decrypt ratio lines of kms-client's stream benchmark."""
    ratios = {}
    for line in cargo_bench("kms-client", "stream", quick).splitlines():
        m = re.match(r"^((?:en|de)crypt: .*?)\s+([0-9.]+)\s+([0-9.]+)\s*$", line)
        if m:
            ratios[m.group(1)] = {"cpu": float(m.group(2)), "wall": float(m.group(3))}
    return ratios


def cluster_figures(quick):
    """The figure lines of the 3-node cluster benchmark (tests/benches/cluster.rs):
    it starts its own cluster and kmsd, with the release kmsd that bench.sh built."""
    out = cargo_bench("kmsd-tests", "cluster", quick, KMSD_TESTS_SKIP_BUILD="1")
    return [line for line in out.splitlines() if line.startswith(("cluster", "  "))]
