"""coturn for tests, started from the shipped deploy/coturn/turnserver.conf.

Only what a deployment must change anyway is replaced (addresses, ports, paths, the secret,
the realm, the certificate, the SFU address relaying is allowed to); every other line is the
shipped one, so a broken or too-open shipped configuration fails the tests. The certificate
is made here (a throwaway CA-less self-signed one) and the process is stopped by PID.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .harness import ROOT

SHIPPED = ROOT / "deploy" / "coturn" / "turnserver.conf"
REPLACED = ("listening-port", "tls-listening-port", "listening-ip", "relay-ip",
            "static-auth-secret", "realm", "cert", "pkey", "allowed-peer-ip", "log-file",
            "pidfile", "min-port", "max-port")


def missing() -> str | None:
    if shutil.which("turnserver") is None:
        return "coturn is not installed (run: make system-deps)"
    return None


def self_signed(folder: Path, address: str) -> tuple[Path, Path]:
    """A certificate for `address` (as IP SAN and CN) and its key, PEM files in `folder`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .sign(key, hashes.SHA256()))
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    (folder / "turn-spki.txt").write_text(base64.b64encode(hashlib.sha256(spki).digest())
                                          .decode())
    cert_path, key_path = folder / "turn-cert.pem", folder / "turn-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Coturn:
    """turnserver on `address` (UDP/TCP `port`, TLS `tls_port`), relaying only to
    `allowed_peers` among private addresses (tests start it inside their own namespace)."""

    def __init__(self, folder: Path, *, address: str, allowed_peers: list[str], secret: str,
                 port: int, tls_port: int, realm: str = "turn.shopcall.test",
                 extra: tuple[str, ...] = (),
                 certificate: Coturn | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.address, self.port, self.tls_port = address, port, tls_port
        self.log_path = folder / "turnserver.log"
        if certificate is None:
            self.cert, self.key = self_signed(folder, address)
            # What Chromium is told to trust (--ignore-certificate-errors-spki-list).
            self.spki_sha256 = (folder / "turn-spki.txt").read_text()
        else:  # the same certificate as an earlier instance (a restart)
            self.cert, self.key = certificate.cert, certificate.key
            self.spki_sha256 = certificate.spki_sha256
        values: dict[str, list[str]] = {
            "listening-port": [str(port)], "tls-listening-port": [str(tls_port)],
            "listening-ip": [address], "relay-ip": [address], "static-auth-secret": [secret],
            "realm": [realm], "cert": [str(self.cert)], "pkey": [str(self.key)],
            "allowed-peer-ip": allowed_peers, "log-file": [str(self.log_path)],
            "pidfile": [str(folder / "turnserver.pid")], "min-port": ["49160"],
            "max-port": ["49260"]}
        seen: set[str] = set()
        lines: list[str] = []
        for line in SHIPPED.read_text().splitlines():
            match = re.match(r"#?\s*([a-z0-9-]+)(=|\s*$)", line)
            key = match.group(1) if match else None
            if key in values and (not line.startswith("#") or "=" in line):
                if key not in seen:
                    lines += [f"{key}={v}" for v in values[key]]
                seen.add(key)
                continue
            lines.append(line)
        absent = set(REPLACED) - seen
        assert not absent, f"the shipped coturn configuration lacks {sorted(absent)}"
        # Its user database (unused with use-auth-secret, opened anyway) in the test's folder.
        lines += [f"userdb={folder / 'turndb'}", *extra]
        self.config = folder / "turnserver.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 15.0) -> Coturn:
        argv = ["turnserver", "-c", str(self.config), "--no-stdout-log"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"turnserver exited: {err}\n{self.log()[-3000:]}")
            if self._listening():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"turnserver did not start: {self.log()[-3000:]}")

    def _listening(self) -> bool:
        try:
            with socket.create_connection((self.address, self.tls_port), timeout=0.2):
                return True
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
