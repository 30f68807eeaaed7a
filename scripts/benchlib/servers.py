"""The servers under test, each started on loopback in the temporary
directory: OpenBao (`bao server -dev` with Transit and KV v2), Kmsd (one
`kmsd serve`) and Floor (kmsd/examples/grpc_floor.rs, the bare tonic
baseline); the [backend] TOML each kmsd is given; and the small HTTP and
/metrics clients they are driven and counted with.
"""

import json
import os
import re
import secrets
import socket
import subprocess
import urllib.error
import urllib.request

from .procs import free_port, ready_once, spawn, stop, wait_until

DIRECT_KEY = "bench-direct"


# ---------------------------------------------------------------- HTTP

def http(method, url, body=None, token=None, timeout=10):
    """(status, parsed JSON or None); status 0 when nothing answered."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("X-Vault-Token", token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError):
        return 0, None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


_METRIC = re.compile(r'^(kmsd_requests_total|kmsd_backend_operations_total)\{([^}]*)\}\s+([0-9.e+]+)$')


def counters(metrics_port):
    """From kmsd's /metrics: requests served, summed by gRPC code
    ({"OK": n, "UNAVAILABLE": m, ...}), and calls to the backend (all
    operations and outcomes) under the key "backend"."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    by_code = {"backend": 0.0}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if not m:
            continue
        if m.group(1) == "kmsd_backend_operations_total":
            by_code["backend"] += float(m.group(3))
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        code = labels.get("code", "?")
        by_code[code] = by_code.get(code, 0) + float(m.group(3))
    return by_code


# ---------------------------------------------------------------- servers

class OpenBao:
    """`bao server -dev` on a free loopback port with its own root token,
    Transit mounted (disable_upsert, as docs/vault.md asks), KV v2 at
    secret/, and the baseline's Transit key."""

    def __init__(self, bao, tmp):
        self.dir = os.path.join(tmp, "openbao")
        os.makedirs(self.dir)
        self.token = "bench-root-" + secrets.token_hex(16)
        self.token_file = os.path.join(self.dir, "root-token")
        with open(os.open(self.token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(self.token)
        env = dict(os.environ, HOME=self.dir)
        for attempt in range(10):
            self.port = free_port(neighbour_too=True)
            logfile = os.path.join(self.dir, f"bao.{attempt}.log")
            self.proc = spawn(
                [
                    bao, "server", "-dev",
                    f"-dev-listen-address=127.0.0.1:{self.port}",
                    f"-dev-root-token-id={self.token}",
                    "-dev-no-store-token",
                ],
                logfile,
                env=env,
            )
            try:
                wait_until("OpenBao answers", lambda: self.api("GET", "sys/health")[0] == 200, self.proc, 60)
                break
            except RuntimeError:
                with open(logfile) as f:
                    text = f.read()
                stop(self.proc)
                if "address already in use" not in text:
                    raise RuntimeError("bao server did not start:\n" + text[-2000:])
        else:
            raise RuntimeError("no free port for bao server")
        self.address = f"http://127.0.0.1:{self.port}"
        _, mounts = self.api("GET", "sys/mounts")
        mounts = (mounts or {}).get("data", mounts or {})
        if "transit/" not in mounts:
            self.must("POST", "sys/mounts/transit", {"type": "transit"})
        if "secret/" not in mounts:
            self.must("POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}})
            # A new KV v2 mount answers 400 while it sets itself up.
            wait_until("KV v2 ready", lambda: self.api("GET", "secret/data/bench-probe")[0] == 404)
        self.must("POST", "transit/config/keys", {"disable_upsert": True})
        self.must("POST", f"transit/keys/{DIRECT_KEY}", {"type": "aes256-gcm96"})

    def api(self, method, path, body=None):
        return http(method, f"http://127.0.0.1:{self.port}/v1/{path}", body, self.token)

    def must(self, method, path, body=None):
        status, answer = self.api(method, path, body)
        if not 200 <= status < 300:
            raise RuntimeError(f"OpenBao {method} {path} answered {status}: {answer}")
        return answer


class Server:
    """What the measuring code needs of any server it started: a process,
    a unix socket in its own directory, and a log file there."""

    log_name = "server.log"

    @property
    def pid(self):
        return self.proc.pid

    @property
    def endpoint(self):
        return f"unix:{self.socket}"

    @property
    def log_path(self):
        return os.path.join(self.dir, self.log_name)

    def log_tail(self):
        try:
            with open(self.log_path) as f:
                return f.read()[-2000:]
        except OSError:
            return ""


class Kmsd(Server):
    """One `kmsd serve` with its own directory, socket and ports."""

    log_name = "kmsd.log"

    def __init__(self, kmsd, tmp, name, backend_toml, audit=True, tcp=False):
        self.kmsd = kmsd
        self.name = name
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, mode=0o700)
        self.socket = os.path.join(self.dir, "kmsd.sock")
        self.metrics_port = free_port()
        self.tcp_port = free_port() if tcp else None
        self.audit = os.path.join(self.dir, "audit.jsonl") if audit else None
        self.config = os.path.join(self.dir, "kmsd.toml")
        server = f'[server]\nunix_socket = "{self.socket}"\nshutdown_grace_secs = 1\n'
        if tcp:
            server += f'tcp = "127.0.0.1:{self.tcp_port}"\ndanger_plaintext_tcp = true\n'
        with open(self.config, "w") as f:
            f.write(
                server
                + f'[metrics]\nlisten = "127.0.0.1:{self.metrics_port}"\n'
                + f'[audit]\noutput = "{self.audit or "off"}"\n'
                + backend_toml.replace("@DIR@", self.dir)
            )
        self.proc = None

    def check_config(self):
        """(ok, first line of the complaint)."""
        out = subprocess.run(
            [self.kmsd, "serve", "--config", self.config, "--check-config"],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [line.strip() for line in (out.stderr or out.stdout).splitlines() if line.strip()]
        # serde names the offending field on a line of its own.
        why = next((line.split(", expected")[0] for line in lines if "unknown field" in line), None)
        return out.returncode == 0, why or (lines[0] if lines else f"exit {out.returncode}")

    def start(self):
        self.proc = spawn(
            [self.kmsd, "serve", "--config", self.config],
            self.log_path,
        )
        wait_until(f"{self.name} ready", lambda: ready_once(self.metrics_port), self.proc, 60, 0.02)

    def counters(self):
        return counters(self.metrics_port)

    def truncate_audit(self):
        # kmsd appends with O_APPEND, so truncating under it is safe; this
        # keeps a long run from filling the disk.
        if self.audit and os.path.exists(self.audit):
            os.truncate(self.audit, 0)


class Floor(Server):
    """kmsd/examples/grpc_floor.rs: a bare tonic GenerateDataKey with
    tonic's defaults, the baseline for server CPU and tail latency."""

    log_name = "floor.log"

    def __init__(self, binary, tmp):
        self.binary = binary
        self.name = "floor"
        self.dir = os.path.join(tmp, "floor")
        os.makedirs(self.dir, mode=0o700)
        self.socket = os.path.join(self.dir, "floor.sock")
        self.proc = None

    def start(self):
        self.proc = spawn([self.binary, self.socket], self.log_path)
        wait_until("grpc_floor ready", self._answers, self.proc, 30, 0.02)

    def _answers(self):
        try:
            self.served()
            return True
        except (OSError, ValueError):
            return False

    def served(self):
        """GenerateDataKeys served so far, from its count socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.socket + ".count")
            data = b""
            while chunk := s.recv(64):
                data += chunk
        return int(data.decode())

    def counters(self):
        return {"OK": float(self.served()), "backend": 0.0}

    def truncate_audit(self):
        pass


def local_backend_toml():
    return (
        '[backend]\nbackend_type = "local"\nkey_dir = "@DIR@/keys"\n'
        'default_key_id = "default"\ncreate_default_key = true\n'
    )


def vault_backend_toml(bao, key_id, ikey=False):
    text = (
        f'[backend]\nbackend_type = "vault"\naddress = "{bao.address}"\n'
        f'default_key_id = "{key_id}"\ncreate_default_key = true\n'
        f'[backend.auth_method]\ntoken_file = "{bao.token_file}"\n'
    )
    if ikey:
        text += "[backend.intermediate_key]\nenabled = true\nttl_seconds = 300\nmax_uses = 1000000\n"
    return text
