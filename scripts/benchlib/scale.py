"""Growth to many keys (issue 21, part 2), local backend.

Fills a key directory with N keys through the backend's own writer
(`kmsd/examples/local_scale.rs populate`, each file written and fsynced as
CreateKey does), then serves it with `kmsd serve` next to a directory of
one key, alternately: start → ready, RSS, the first ListKeys page, and
GenerateDataKey and Decrypt at 64 in flight. A sealed directory of N keys
is timed too (start → ready includes one Argon2id stretch of the
passphrase, so the one-key sealed directory is its baseline). Then the
example's own measurement: CreateKey and RotateKey cost at 1,000 keys and
at N (tmpfs, so the figure is kmsd's own work), and CreateKey throughput
with durable writes on the disk, alone and next to data-plane load.
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import time

from . import ROOT
from .measure import memory_kib
from .procs import free_port, ready_once, spawn, stop
from .servers import Kmsd

EXAMPLE = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                       "release/examples/local_scale")
TARGET_READY_MS = 1000.0       # start → ready at N keys (sealed: + one KDF, the one-key sealed start)
TARGET_RSS_MIB = 64.0
TARGET_DATA_RATIO = 0.9        # GDK and Decrypt req/s at N ÷ at one key
TARGET_FIRST_PAGE_MS = 50.0
TARGET_WRITE_GROWTH = 1.2      # CreateKey / RotateKey cost at N ÷ at 1,000
LIST_KEYS_PATH = "/kms.v1.KeyAdmin/ListKeys"
# A gRPC frame holding ListKeysRequest { page_size: 100 }.
LIST_KEYS_BODY = b"\x00\x00\x00\x00\x02\x08\x64"
PASSPHRASE = "bench-passphrase-not-a-secret-0123456789"


def log(message):
    print(message, flush=True, file=__import__("sys").stderr)


def example(args, env=None, timeout=1800):
    out = subprocess.run([EXAMPLE] + args, capture_output=True, text=True, check=False,
                         env=dict(os.environ, **(env or {})), timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"local_scale {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def backend_toml(key_dir, passphrase_file=None):
    text = (f'[backend]\nbackend_type = "local"\nkey_dir = "{key_dir}"\n'
            'default_key_id = "default"\ncreate_default_key = true\n')
    if passphrase_file:
        text += f'[backend.sealing]\npassphrase_file = "{passphrase_file}"\n'
    return text


def time_to_ready(server, starts):
    """Milliseconds from spawning `kmsd serve` to /health/ready, `starts`
    times; the server is left stopped."""
    samples = []
    for _ in range(starts):
        port = free_port()
        cmd = [server.kmsd, "serve", "--config", server.config, "--metrics-listen", f"127.0.0.1:{port}"]
        t0 = time.perf_counter()
        proc = spawn(cmd, server.log_path, die_with_parent=False)
        while not ready_once(port):
            if proc.poll() is not None:
                raise RuntimeError(f"kmsd exited before ready:\n{server.log_tail()}")
            if time.perf_counter() - t0 > 120:
                raise RuntimeError(f"kmsd not ready after 120 s:\n{server.log_tail()}")
            time.sleep(0.001)
        samples.append((time.perf_counter() - t0) * 1000.0)
        stop(proc)
    return samples


def first_list_page_ms(runner, server):
    """One ListKeys of 100 keys, the first after start (h2load, one
    request), in milliseconds."""
    body = os.path.join(runner.tmp, "list-keys.bin")
    with open(body, "wb") as f:
        f.write(LIST_KEYS_BODY)
    cmd = ["h2load", "-n", "1", "-c", "1", "-m", "1", "-d", body,
           "-H", "content-type: application/grpc", "-H", "te: trailers",
           "--log-file", os.path.join(runner.tmp, "list.log"),
           f"--base-uri=unix:{server.socket}", f"http://localhost{LIST_KEYS_PATH}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    # A refusal is HTTP 200 too, with the gRPC status in trailers and no
    # data: a page of keys is data.
    data = re.search(r"traffic: .* \((\d+)\) data", out.stdout)
    if out.returncode != 0 or "1 succeeded" not in out.stdout or not data or int(data.group(1)) < 50:
        raise RuntimeError(f"ListKeys over h2load failed:\n{out.stdout[-1500:]}")
    with open(os.path.join(runner.tmp, "list.log")) as f:
        micros = int(f.read().split()[2])
    return micros / 1000.0


def bench_rps(runner, server, workload):
    """req/s of `kmsd bench` at 64 in flight over 4 connections (OpenBao
    is not running any more, so not through Runner, which also samples
    its CPU)."""
    cmd = [runner.kmsd, "--endpoint", server.endpoint, "bench", "--json",
           "--duration", str(runner.args.duration), "--warmup", str(runner.args.warmup),
           "-c", "64", "-m", "4", "--workload", workload]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}{out.stdout}")
    return json.loads(out.stdout)["rps"]


def serve_cells(runner, tmp, dirs, starts, rounds):
    """For each (label, key_dir, passphrase_file): start → ready, then (for
    the unsealed ones) RSS, the first ListKeys page and GDK/Decrypt at 64
    in flight, alternating between the directories in each round."""
    out = {label: {"ready_ms": [], "first_page_ms": [], "gdk_rps": [], "decrypt_rps": [],
                   "rss_ready_kib": [], "hwm_kib": []} for label, _, _ in dirs}
    for r in range(rounds):
        for label, key_dir, passphrase in dirs:
            server = Kmsd(runner.kmsd, tmp, f"scale-{label}-{r}", backend_toml(key_dir, passphrase), audit=True)
            out[label]["ready_ms"] += time_to_ready(server, starts)
            if passphrase:
                shutil.rmtree(server.dir, ignore_errors=True)
                continue
            server.start()
            out[label]["rss_ready_kib"].append(memory_kib(server.pid)["VmRSS"])
            out[label]["first_page_ms"].append(first_list_page_ms(runner, server))
            out[label]["gdk_rps"].append(bench_rps(runner, server, "gdk"))
            out[label]["decrypt_rps"].append(bench_rps(runner, server, "decrypt"))
            out[label]["hwm_kib"].append(memory_kib(server.pid)["VmHWM"])
            log(f"    round {r + 1}/{rounds} scale {label:<14} ready {statistics.median(out[label]['ready_ms'][-starts:]):7.1f} ms  "
                f"first page {out[label]['first_page_ms'][-1]:6.2f} ms  GDK {out[label]['gdk_rps'][-1]:>8,.0f}/s  "
                f"Decrypt {out[label]['decrypt_rps'][-1]:>8,.0f}/s  VmHWM {out[label]['hwm_kib'][-1] / 1024:.1f} MiB")
            stop(server.proc)
            shutil.rmtree(server.dir, ignore_errors=True)
    return out


def scale_figures(runner, tmp, keys, quick):
    """Everything of this module, as one dict for the report."""
    if not os.access(EXAMPLE, os.X_OK):
        return {"skipped": f"{EXAMPLE} not built (scripts/bench.sh builds it)"}
    # tmpfs when there is one: filling it is kmsd's own work, not the
    # disk's; start-up reads the page cache either way.
    base = "/dev/shm" if os.path.isdir("/dev/shm") else tmp
    work = os.path.join(base, f"kmsd-bench-scale-{os.getpid()}")
    os.makedirs(work, mode=0o700)
    try:
        passphrase_file = os.path.join(work, "passphrase")
        with open(passphrase_file, "w") as f:
            f.write(PASSPHRASE)
        os.chmod(passphrase_file, 0o600)
        many, one = os.path.join(work, "many"), os.path.join(work, "one")
        many_sealed, one_sealed = os.path.join(work, "many-sealed"), os.path.join(work, "one-sealed")
        log(f"==> scale: filling {many} with {keys:,} keys (and a sealed copy)")
        t0 = time.perf_counter()
        example(["populate", many, str(keys)])
        populate_s = time.perf_counter() - t0
        example(["populate", one, "1"])
        sealed_env = {"LOCAL_SCALE_PASSPHRASE_FILE": passphrase_file}
        example(["populate", many_sealed, str(keys)], env=sealed_env)
        example(["populate", one_sealed, "1"], env=sealed_env)
        log(f"    {populate_s:.1f} s for the unsealed directory")
        rounds = 1 if quick else 2
        serve = serve_cells(runner, tmp, [
            ("one key", one, None), (f"{keys} keys", many, None),
            ("one key sealed", one_sealed, passphrase_file), (f"{keys} sealed", many_sealed, passphrase_file),
        ], 1 if quick else 3, rounds)
        log(f"==> scale: local_scale {keys} (create, rotate, read; open figures)")
        measured = example([str(keys), os.path.join(work, "measure"), "300" if quick else "1000"])
        durable_dir = os.path.join(tmp, "durable")
        durable_keys = 1000 if quick else 3000
        log(f"==> scale: local_scale {durable_keys} on disk (durable CreateKey throughput)")
        durable = example([str(durable_keys), durable_dir, "300" if quick else "1000"])
        return {"keys": keys, "populate_s": populate_s, "serve": serve,
                "measure": measured, "durable": durable, "durable_keys": durable_keys}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _median(values):
    return statistics.median(values) if values else None


def scale_report(scale, fmt, table, verdict):
    """(text, target rows [name, value, measured text, goal, verdict]) of
    the growth cells, for report.py."""
    if not scale or "skipped" in scale:
        return (f"growth cells: {scale.get('skipped')}" if scale else ""), []
    keys = scale["keys"]
    serve = scale["serve"]
    one, many = serve["one key"], serve[f"{keys} keys"]
    sealed_one, sealed_many = serve["one key sealed"], serve[f"{keys} sealed"]
    m, d = scale["measure"], scale["durable"]
    rows = []
    for label, cell in (("one key", one), (f"{keys:,} keys", many),
                        ("one key, sealed", sealed_one), (f"{keys:,} keys, sealed", sealed_many)):
        rows.append([label, fmt(_median(cell["ready_ms"]), ",.1f", " ms"),
                     fmt(_median(cell["rss_ready_kib"]) and _median(cell["rss_ready_kib"]) / 1024, ".1f", " MiB"),
                     fmt(max(cell["hwm_kib"], default=0) / 1024 or None, ".1f", " MiB"),
                     fmt(_median(cell["first_page_ms"]), ".2f", " ms"),
                     fmt(_median(cell["gdk_rps"])), fmt(_median(cell["decrypt_rps"]))])
    text = [table(rows, ["kmsd serve, local backend", "start → ready", "VmRSS ready", "VmHWM after load",
                         "ListKeys page 1", "GDK/s c64", "Decrypt/s c64"])]
    small, large = m["small"], m["large"]
    rows = [[f"{p['keys']:,}", fmt(p["create_us"], ".1f"), fmt(p["create_cpu_us"], ".1f"), fmt(p["rotate_us"], ".1f"),
             fmt(p["read_us"], ".1f"), fmt(p["creates_per_s"]), fmt(p["creates_per_s_loaded"])]
            for p in (small, large)]
    for p in (d["small"], d["large"]):
        rows.append([f"{p['keys']:,} (disk, durable)", fmt(p["create_us"], ".1f"), fmt(p["create_cpu_us"], ".1f"),
                     fmt(p["rotate_us"], ".1f"), fmt(p["read_us"], ".1f"), fmt(p["creates_per_s"]),
                     fmt(p["creates_per_s_loaded"])])
    text.append(table(rows, ["local_scale keys", "create µs", "create CPU µs", "rotate µs", "GDK+Decrypt µs",
                             "creates/s", "creates/s beside load"]))
    reopen = m["reopen"]
    text.append(f"local_scale, opening {reopen['keys']:,} keys in-process: {reopen['open_s'] * 1000:,.0f} ms; "
                f"ListKeys every page {reopen['full_list_ms']:,.0f} ms "
                f"({reopen['full_list_ms'] / max(reopen['keys'], 1) * 1000:.2f} µs per key; one key: "
                f"{m['one_key']['full_list_ms']:.2f} ms); VmRSS after the full listing "
                f"{reopen['rss_after_list_kib'] / 1024:.1f} MiB")

    ready_many = _median(many["ready_ms"])
    sealed_goal = _median(sealed_one["ready_ms"])
    sealed_many_ms = _median(sealed_many["ready_ms"])
    sealed_extra = None if sealed_goal is None or sealed_many_ms is None else sealed_many_ms - sealed_goal
    hwm = max(many["hwm_kib"], default=None)
    hwm_mib = None if hwm is None else hwm / 1024
    gdk = _ratio(many["gdk_rps"], one["gdk_rps"])
    dec = _ratio(many["decrypt_rps"], one["decrypt_rps"])
    page = _median(many["first_page_ms"])
    create = large["create_cpu_us"] / small["create_cpu_us"] if small["create_cpu_us"] else None
    rotate = large["rotate_us"] / small["rotate_us"] if small["rotate_us"] else None
    n = f"{keys:,} keys"
    targets = [
        (f"start → ready at {n} (median)", ready_many, f"≤ {TARGET_READY_MS:g} ms",
         verdict(ready_many, TARGET_READY_MS, False), fmt(ready_many, ",.1f", " ms")),
        (f"start → ready at {n}, sealed, beyond the one-key sealed start (its KDF)", sealed_extra,
         f"≤ {TARGET_READY_MS:g} ms", verdict(sealed_extra, TARGET_READY_MS, False), fmt(sealed_extra, ",.1f", " ms")),
        (f"RSS (VmHWM) at {n} after GDK and Decrypt", hwm_mib, f"≤ {TARGET_RSS_MIB:g} MiB",
         verdict(hwm_mib, TARGET_RSS_MIB, False), fmt(hwm_mib, ".1f", " MiB")),
        (f"GDK req/s at {n} ÷ one key", gdk, f"≥ {TARGET_DATA_RATIO:g}×",
         verdict(gdk, TARGET_DATA_RATIO, True), fmt(gdk, ".2f", "×")),
        (f"Decrypt req/s at {n} ÷ one key", dec, f"≥ {TARGET_DATA_RATIO:g}×",
         verdict(dec, TARGET_DATA_RATIO, True), fmt(dec, ".2f", "×")),
        (f"ListKeys first page at {n}", page, f"≤ {TARGET_FIRST_PAGE_MS:g} ms",
         verdict(page, TARGET_FIRST_PAGE_MS, False), fmt(page, ".2f", " ms")),
        (f"CreateKey CPU at {n} ÷ at {small['keys']:,}", create, f"≤ {TARGET_WRITE_GROWTH:g}×",
         verdict(create, TARGET_WRITE_GROWTH, False), fmt(create, ".2f", "×")),
        (f"RotateKey time at {n} ÷ at {small['keys']:,}", rotate, f"≤ {TARGET_WRITE_GROWTH:g}×",
         verdict(rotate, TARGET_WRITE_GROWTH, False), fmt(rotate, ".2f", "×")),
    ]
    return "\n".join(text), targets


def _ratio(values, base):
    """Median of the per-round ratios (the rounds alternate the two)."""
    pairs = [a / b for a, b in zip(values, base) if b]
    return statistics.median(pairs) if pairs else None
