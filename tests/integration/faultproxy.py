"""A fault-injecting HTTPS proxy in front of the real test API server, for the tests' own use.

It terminates TLS on 127.0.0.1 with a certificate from a CA of its own (the kubeconfig it writes
trusts that CA), reads each HTTP/1.1 request, and either forwards it to the API server (as the
admin identity, over a TLS connection of its own) or injects a fault chosen by a seeded RNG:

    reset_before   connection reset before the request is forwarded (nothing happened)
    reset_after    request forwarded, the answer dropped with a reset (it happened, unseen)
    throttle       429 with Retry-After: 1, as the API server's max-in-flight filter answers
    error500 / error503
    conflict       409 Conflict to a write, not forwarded (nothing happened): what the API server
                   answers when the object moved on since its resourceVersion was read
    latency        a delay of up to 0.3 s, then forwarded

`stall` rules hold a request without an answer (a half-open connection, from the client's side)
until the proxy stops or `stall_seconds` pass. Faults are capped per distinct request (method,
path, body), so a client that retries each request a few times always gets through: the tests
check that harden converges through faults, not that it survives an outage.

Only loopback addresses; every thread is a daemon and every wait is bounded.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import http.client
import ipaddress
import json
import random
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# New faults go at the end, so an existing seed of test_faults.py (which names its faults) draws
# the same as before; soak.py samples from the whole tuple, so a new fault changes its draws.
FAULTS = ("reset_before", "reset_after", "throttle", "error500", "error503", "latency", "conflict")
MAX_HEADER = 64 * 1024


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    body: bytes

    @property
    def write(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")

    @property
    def dry_run(self) -> bool:
        return "dryRun=" in self.path


Rule = Callable[[Seen], bool]


@dataclass
class FaultProxy:
    admin_kubeconfig: str
    workdir: Path
    seed: int = 0
    rates: dict[str, float] = field(default_factory=dict)  # fault -> probability per request
    per_request_cap: int = 2
    first: list[tuple[Rule, str]] = field(default_factory=list)  # (rule, fault): once, on the first match
    stall: Rule | None = None
    stall_seconds: float = 60.0

    def __post_init__(self) -> None:
        cfg = yaml.safe_load(Path(self.admin_kubeconfig).read_text())
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        self.upstream = cluster["server"].removeprefix("https://")
        self.workdir.mkdir(parents=True, exist_ok=True)
        cert, key = self.workdir / "upstream-client.crt", self.workdir / "upstream-client.key"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        key.chmod(0o600)
        self._up_ctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        self._up_ctx.load_cert_chain(cert, key)
        self.ca_pem, serving_cert, serving_key = _pki()
        (self.workdir / "proxy.crt").write_bytes(serving_cert)
        (self.workdir / "proxy.key").write_bytes(serving_key)
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(self.workdir / "proxy.crt", self.workdir / "proxy.key")
        self._admin_cfg = cfg
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._per_request: dict[str, int] = {}
        self.injected: dict[str, int] = {}
        self.log: list[tuple[str, str, str, float]] = []  # (fault or "ok", method, path, when)
        self.first_stall: float | None = None
        self._server: socketserver.ThreadingTCPServer | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def kubeconfig(self, path: Path) -> str:
        """The admin kubeconfig, pointed at the proxy and trusting the proxy's CA."""
        cfg = json.loads(json.dumps(self._admin_cfg))
        cfg["clusters"][0]["cluster"] = {"server": self.url,
                                         "certificate-authority-data": base64.b64encode(self.ca_pem).decode()}
        path.write_text(yaml.safe_dump(cfg))
        path.chmod(0o600)
        return str(path)

    def configure(self, *, rates: dict[str, float] | None = None, first: list[tuple[Rule, str]] | None = None,
                  stall: Rule | None = None) -> None:
        with self._lock:
            self.rates = dict(rates or {})
            self.first = list(first or [])
            self.stall = stall
            self._per_request.clear()
            self.injected.clear()
            self.log.clear()
            self.first_stall = None

    # -- the work --------------------------------------------------------------------------------
    def _choose(self, seen: Seen) -> str | None:
        with self._lock:
            if self.stall is not None and self.stall(seen):
                self.first_stall = self.first_stall or time.time()
                return "stall"
            for i, (rule, fault) in enumerate(self.first):
                if rule(seen):
                    del self.first[i]
                    return self._count(fault)
            ident = hashlib.sha256(f"{seen.method} {seen.path}".encode() + seen.body).hexdigest()
            roll = self._rng.random()
            if self._per_request.get(ident, 0) >= self.per_request_cap:
                return None
            for fault in FAULTS:
                p = self.rates.get(fault, 0.0)
                if fault == "conflict" and not seen.write:
                    continue  # a read is never refused with 409
                if roll < p:
                    self._per_request[ident] = self._per_request.get(ident, 0) + 1
                    return self._count(fault)
                roll -= p
            return None

    def _count(self, fault: str) -> str:
        self.injected[fault] = self.injected.get(fault, 0) + 1
        return fault

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(30)
        try:
            conn = self._ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        upstream: http.client.HTTPSConnection | None = None
        reader = conn.makefile("rb")
        try:
            while not self._stop.is_set():
                request = _read_request(reader)
                if request is None:
                    return
                method, path, headers, body = request
                seen = Seen(method, path, body)
                fault = self._choose(seen)
                with self._lock:
                    self.log.append((fault or "ok", method, path, time.time()))
                if fault == "stall":
                    self._stop.wait(self.stall_seconds)
                    return _reset(conn)
                if fault == "reset_before":
                    return _reset(conn)
                if fault in ("throttle", "error500", "error503", "conflict"):
                    code = {"throttle": 429, "error500": 500, "error503": 503, "conflict": 409}[fault]
                    conn.sendall(_status_response(code))
                    continue
                if fault == "latency":
                    time.sleep(self._rng_uniform(0.05, 0.3))
                if upstream is None:
                    upstream = http.client.HTTPSConnection(self.upstream, context=self._up_ctx, timeout=30)
                send = {k: v for k, v in headers if k.lower() not in ("host", "connection", "content-length",
                                                                         "transfer-encoding", "keep-alive")}
                upstream.request(method, path, body=body if body or method in ("POST", "PUT", "PATCH") else None,
                                 headers=send)
                resp = upstream.getresponse()
                data = resp.read()
                if fault == "reset_after":
                    return _reset(conn)
                head = [f"HTTP/1.1 {resp.status} {resp.reason}"]
                head += [f"{k}: {v}" for k, v in resp.getheaders()
                         if k.lower() not in ("content-length", "transfer-encoding", "connection", "keep-alive")]
                head += [f"Content-Length: {len(data)}", "", ""]
                conn.sendall("\r\n".join(head).encode("latin-1") + data)
        except (OSError, ssl.SSLError, http.client.HTTPException):
            return
        finally:
            if upstream is not None:
                upstream.close()
            with contextlib.suppress(OSError):
                conn.close()

    def _rng_uniform(self, a: float, b: float) -> float:
        with self._lock:
            return self._rng.uniform(a, b)


def _read_request(reader) -> tuple[str, str, list[tuple[str, str]], bytes] | None:
    line = reader.readline(MAX_HEADER)
    if not line.strip():
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: list[tuple[str, str]] = []
    total = 0
    while True:
        h = reader.readline(MAX_HEADER)
        total += len(h)
        if h in (b"\r\n", b"\n", b"") or total > MAX_HEADER:
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))
    length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
    body = reader.read(length) if length else b""
    return method, path, headers, body


def _status_response(code: int) -> bytes:
    # The API server's own shape for these answers: a metav1.Status (429 from the max-in-flight
    # filter carries Retry-After: 1, staging/src/k8s.io/apiserver/pkg/server/filters/maxinflight.go).
    # 409 as the registry's optimistic-concurrency check words it (apimachinery
    # pkg/api/errors/errors.go, NewConflict: reason Conflict).
    reason = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}[code]
    body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
                       "message": f"injected by the test fault proxy ({code})"}).encode()
    head = [f"HTTP/1.1 {code} {http.client.responses[code]}", "Content-Type: application/json",
            f"Content-Length: {len(body)}"]
    if code in (429, 503):
        head.append("Retry-After: 1")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _reset(conn: ssl.SSLSocket) -> None:
    # SO_LINGER 0: close sends RST, the way a dropped NAT entry or a killed peer looks.
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    except OSError:
        pass


def _pki() -> tuple[bytes, bytes, bytes]:
    """A CA of the proxy's own and a serving certificate for 127.0.0.1 (as tests/kube/cluster.py does)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "harden-fault-proxy-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "harden-fault-proxy")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca.public_bytes(pem), cert.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
