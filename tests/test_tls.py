"""HTTPS (issue 17): shopcall serving TLS itself ([server] tls_cert/tls_key, `serve
--tls-cert/--tls-key`), and behind nginx with the shipped deploy/nginx/shopcall.conf.

Certificates are made here: a throwaway CA and a server certificate for 127.0.0.1/localhost
signed by it, which clients trust by that CA alone (never by switching verification off).

nginx runs from the shipped file itself, with only what cannot be the same in a test
substituted (ports, certificate paths, the ACME webroot) and wrapped in a main configuration
whose pid, logs and temporary files are all in the test's directory; a directive the test
expects and does not find fails the test, so a broken shipped file breaks it.
tests/test_browser_tls.py reuses these helpers for the browser flow through nginx.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ipaddress
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signaling import cli
from signaling.config import ConfigError, ServerConfig, load_settings
from signaling.model import Role

from .harness import ROOT, ServerProcess, WsClient

pytestmark = pytest.mark.integration

SHIPPED_NGINX_CONF = ROOT / "deploy" / "nginx" / "shopcall.conf"
HSTS = "Strict-Transport-Security"


# Certificates ------------------------------------------------------------------------------

@dataclass
class Certs:
    ca: Path  # the CA certificate clients trust
    cert: Path  # the server's certificate (PEM)
    key: Path  # its private key (PKCS#8 PEM, unencrypted)
    spki_sha256: str  # base64 SHA-256 of the server key's SubjectPublicKeyInfo (Chromium)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def server_settings(self) -> str:
        """The [server] lines for tests/harness.py's `server_extra`."""
        return f"tls_cert = {json.dumps(str(self.cert))}\ntls_key = {json.dumps(str(self.key))}"


def make_certs(folder: Path, *, name: str = "server") -> Certs:
    """A CA and a certificate for 127.0.0.1 and localhost (subject alternative names, as
    browsers require) that it signed, valid from an hour ago for two days."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shopcall test CA")])

    def usage(**on: bool) -> Any:
        flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment",
                               "data_encipherment", "key_agreement", "key_cert_sign",
                               "crl_sign", "encipher_only", "decipher_only"), False)
        return x509.KeyUsage(**{**flags, **on})

    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    certs = Certs(ca=folder / "ca.pem", cert=folder / f"{name}.pem",
                  key=folder / f"{name}.key", spki_sha256=base64.b64encode(hashlib.sha256(
                      key.public_key().public_bytes(
                          serialization.Encoding.DER,
                          serialization.PublicFormat.SubjectPublicKeyInfo)).digest()).decode())
    certs.ca.write_bytes(ca.public_bytes(pem))
    certs.cert.write_bytes(leaf.public_bytes(pem))
    certs.key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    certs.key.chmod(0o600)
    return certs


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path / "certs")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# nginx with the shipped configuration -------------------------------------------------------

def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)),
        None)
    if found is None:
        pytest.fail("nginx is not installed: run `sudo make system-deps` (Debian package "
                    "nginx-light)")
    return found


# What a test cannot keep from the shipped file, as (what, regex, expected matches): each
# must match exactly that often, so that an edit of the file that drops or changes one of
# these directives fails here instead of the test silently running something else.
def _substitutions(*, https_port: int, http_port: int, upstream_port: int, certs: Certs,
                   webroot: Path) -> list[tuple[str, str, str, int]]:
    return [
        ("the HTTPS listener", r"^(\s*)listen 443 ssl http2;",
         rf"\1listen 127.0.0.1:{https_port} ssl http2;", 1),
        ("the plain HTTP listener", r"^(\s*)listen 80;", rf"\1listen 127.0.0.1:{http_port};", 1),
        ("the IPv6 listeners", r"^\s*listen \[::\]:\d+[^;]*;", "", 2),
        ("shopcall's address", r"^(\s*)server 127\.0\.0\.1:8080;",
         rf"\1server 127.0.0.1:{upstream_port};", 1),
        ("the certificate", r"^(\s*)ssl_certificate /etc/letsencrypt/live/[^;]+;",
         rf"\1ssl_certificate {certs.cert};", 1),
        ("the private key", r"^(\s*)ssl_certificate_key /etc/letsencrypt/live/[^;]+;",
         rf"\1ssl_certificate_key {certs.key};", 1),
        ("the ACME webroot", r"^(\s*)root /var/www/letsencrypt;", rf"\1root {webroot};", 1),
    ]


def derive_nginx_config(prefix: Path, *, https_port: int, http_port: int, upstream_port: int,
                        certs: Certs) -> Path:
    """deploy/nginx/shopcall.conf made runnable in `prefix`; returns the main nginx.conf."""
    text = SHIPPED_NGINX_CONF.read_text()
    webroot = prefix / "acme"
    webroot.mkdir(parents=True, exist_ok=True)
    for what, pattern, replacement, expected in _substitutions(
            https_port=https_port, http_port=http_port, upstream_port=upstream_port,
            certs=certs, webroot=webroot):
        text, n = re.subn(pattern, replacement, text, flags=re.M)
        assert n == expected, (
            f"{SHIPPED_NGINX_CONF.relative_to(ROOT)}: expected {expected} directive(s) for "
            f"{what} matching {pattern!r}, found {n}; update tests/test_tls.py with the file")
    site = prefix / "shopcall.conf"
    site.write_text(text)
    temp = prefix / "temp"
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (temp / sub).mkdir(parents=True, exist_ok=True)
    # As root nginx hands requests to "nobody" workers, which could not enter pytest's
    # private temporary directory (client bodies are buffered there): keep them as us.
    user = (f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else "")
    main = prefix / "nginx.conf"
    main.write_text(f"""
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{
    worker_connections 256;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {site};
}}
""")
    return main


class Nginx:
    """nginx in the foreground on free loopback ports, proxying to a shopcall server."""

    def __init__(self, prefix: Path, certs: Certs, upstream_port: int) -> None:
        self.prefix = prefix
        self.https_port, self.http_port = free_port(), free_port()
        prefix.mkdir(parents=True, exist_ok=True)
        self.conf = derive_nginx_config(prefix, https_port=self.https_port,
                                        http_port=self.http_port,
                                        upstream_port=upstream_port, certs=certs)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def wss_url(self) -> str:
        return f"wss://127.0.0.1:{self.https_port}/ws"

    def start(self, timeout_s: float = 10.0) -> None:
        binary = nginx_binary()
        self._out = (self.prefix / "nginx.out").open("wb")
        self.proc = subprocess.Popen(
            [binary, "-p", f"{self.prefix}/", "-c", str(self.conf), "-g", "daemon off;"],
            stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"nginx did not start:\n{self.logs()}")
            if all(_listening(port) for port in (self.https_port, self.http_port)):
                return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"nginx did not listen within {timeout_s:.0f} s:\n{self.logs()}")

    def logs(self) -> str:
        out = []
        for name in ("nginx.out", "error.log"):
            path = self.prefix / name
            if path.exists():
                out.append(f"--- {name} ---\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)

    def stop(self) -> None:
        """SIGTERM to the master (it stops its workers), SIGKILL to the group if stuck."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
            self.proc = None
            self._out.close()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def server_port(server: ServerProcess) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


@pytest.fixture
def proxied(tmp_path: Path, certs: Certs, server_factory: Callable[..., ServerProcess]
            ) -> Iterator[tuple[ServerProcess, Nginx]]:
    """shopcall on plain HTTP trusting nginx on loopback, nginx in front with TLS."""
    nginx_binary()  # before starting anything
    server = server_factory(trusted_proxies='["127.0.0.1"]')
    nginx = Nginx(tmp_path / "nginx", certs, server_port(server))
    nginx.start()
    try:
        yield server, nginx
    except BaseException:
        print(nginx.logs())
        raise
    finally:
        nginx.stop()


def session(certs: Certs | None = None, *, local: str | None = None) -> aiohttp.ClientSession:
    """A client trusting our CA (or the system's, with None), optionally from 127.0.0.x."""
    connector = aiohttp.TCPConnector(
        ssl=certs.client_context() if certs else True,
        local_addr=(local, 0) if local else None, force_close=True)
    return aiohttp.ClientSession(connector=connector)


async def wss_client(url: str, certs: Certs, token: str,
                     origin: str | None = None) -> WsClient:
    """tests/harness.py's WsClient over wss:, trusting the test CA, after its hello."""
    s = session(certs)
    ws = await s.ws_connect(url, origin=origin, max_msg_size=0)
    client = WsClient(s, ws)
    reply = await client.send("hello", token=token)
    assert reply["type"] == "welcome", reply
    client.welcome = reply
    return client


# Configuration -----------------------------------------------------------------------------

def test_tls_settings_load_into_a_tls12_server_context(certs: Certs) -> None:
    settings = load_settings(None, {"server.tls_cert": str(certs.cert),
                                    "server.tls_key": str(certs.key)})
    context = settings.server.ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ServerConfig().ssl_context() is None  # no TLS by default


def test_bad_tls_settings_are_config_errors_naming_the_key(tmp_path: Path,
                                                            certs: Certs) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = make_certs(tmp_path / "other")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret passphrase")))

    def error(cert: Path | None, key: Path | None) -> str:
        overrides = {k: str(v) for k, v in (("server.tls_cert", cert),
                                            ("server.tls_key", key)) if v is not None}
        with pytest.raises(ConfigError) as exc:
            load_settings(None, overrides)
        return str(exc.value)

    assert "server.tls_key: set server.tls_cert and server.tls_key together" in \
        error(certs.cert, None)
    assert "server.tls_cert: set server.tls_cert and server.tls_key together" in \
        error(None, certs.key)
    missing = error(tmp_path / "nope.pem", certs.key)
    assert f"server.tls_cert: file not found: {tmp_path / 'nope.pem'}" in missing
    assert "server.tls_key" not in missing
    assert "server.tls_key: file not found" in error(certs.cert, tmp_path / "nope.key")
    assert "server.tls_key: cannot read" in error(certs.cert, tmp_path)  # a directory
    assert "server.tls_key:" in error(certs.cert, other.key) and \
        "is not the private key of the certificate" in error(certs.cert, other.key)
    assert "server.tls_cert:" in error(junk, certs.key) and \
        "holds no PEM certificate" in error(junk, certs.key)
    assert "server.tls_cert:" in error(certs.key, certs.cert)  # swapped
    assert "server.tls_key:" in error(certs.cert, junk) and \
        "holds no PEM private key" in error(certs.cert, junk)
    assert "is encrypted" in error(certs.cert, encrypted)  # refused, not a prompt


def test_serve_with_half_the_tls_options_exits_2(tmp_path: Path, certs: Certs,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["serve", "--db", str(tmp_path / "x.db"), "--tls-cert", str(certs.cert)])
    assert code == 2
    assert "server.tls_key" in capsys.readouterr().err


def test_serve_tls_options_print_https_urls(tmp_path: Path, certs: Certs) -> None:
    """`shopcall serve --tls-cert --tls-key`: every URL in the banner is https."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SHOPCALL_")}
    env.update(SHOPCALL_MEDIA__BACKEND="none", PYTHONUNBUFFERED="1",
               SHOPCALL_AUTH__SECRET="tls-test-secret-tls-test-secret-0123")
    proc = subprocess.Popen(
        [sys.executable, "-m", "signaling", "serve", "--port", "0", "--db",
         str(tmp_path / "x.db"), "--tls-cert", str(certs.cert), "--tls-key", str(certs.key)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(4)]
        assert re.fullmatch(r"shopcall listening on https://127\.0\.0\.1:\d+", lines[0]), lines
        base = lines[0].rsplit(" ", 1)[1]
        assert lines[1:] == [f"shopper page:  {base}/", f"staff console: {base}/staff",
                             f"dashboard:     {base}/dashboard"]
        import urllib.request

        with urllib.request.urlopen(base + "/healthz", timeout=10,
                                    context=certs.client_context()) as response:
            assert json.load(response) == {"status": "ok"}
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


# Direct TLS ----------------------------------------------------------------------------------

async def test_direct_tls_https_wss_and_hsts(certs: Certs,
                                             server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(server_extra=certs.server_settings(),
                            extra_config='[metrics]\nhost = "127.0.0.1"\nport = 0\n')
    assert server.base_url.startswith("https://127.0.0.1:"), server.banner
    assert server.ws_url.startswith("wss://127.0.0.1:")
    assert all("http://" not in line for line in server.banner if "metrics" not in line)

    async with session(certs) as s:
        async with s.get(server.base_url + "/healthz") as resp:
            assert resp.status == 200 and await resp.json() == {"status": "ok"}
            # Served over TLS: request.secure, so browsers are told to stay on HTTPS.
            assert resp.headers.getall(HSTS) == ["max-age=31536000"]
        async with s.get(server.base_url + "/staff") as resp:
            assert resp.status == 200 and resp.headers[HSTS] == "max-age=31536000"
    # The certificate is really checked: a client that does not trust the CA refuses it.
    async with session() as s:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await s.get(server.base_url + "/healthz")
    # Plain HTTP to the TLS port gets no HTTP answer.
    plain = server.base_url.replace("https://", "http://")
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientError):
            async with s.get(plain + "/healthz") as resp:
                await resp.read()
    # A TLS 1.2-only client is still served (the floor is 1.2, not 1.3).
    tls12 = certs.client_context()
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls12)) as s, \
            s.get(server.base_url + "/healthz") as resp:
        assert resp.status == 200
    cbc = certs.client_context()  # ... but not with its CBC ciphers
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=cbc)) as s:
        with pytest.raises(aiohttp.ClientConnectorError):
            await s.get(server.base_url + "/healthz")

    # The signalling WebSocket over wss: hello, welcome, and a ping answered.
    staff = await wss_client(server.ws_url, certs, server.token(Role.STAFF, "alice"))
    try:
        assert staff.welcome["type"] == "welcome"
        assert (await staff.send("ping"))["type"] == "pong"
        await staff.ok("presence.set", status="online")
    finally:
        await staff.close()

    # The separate metrics address stays plain HTTP (a private network, see server.py).
    assert server.metrics_url.startswith("http://127.0.0.1:"), server.banner
    async with aiohttp.ClientSession() as s, s.get(server.metrics_url) as resp:
        assert resp.status == 200 and "shopcall" in await resp.text()
    assert server.alive


# Behind nginx --------------------------------------------------------------------------------

async def test_nginx_serves_https_and_redirects_http(proxied: tuple[ServerProcess, Nginx],
                                                     certs: Certs) -> None:
    server, nginx = proxied
    async with session(certs) as s:
        async with s.get(nginx.https_url + "/healthz") as resp:
            assert resp.status == 200 and await resp.json() == {"status": "ok"}
            # shopcall's HSTS (nginx said X-Forwarded-Proto: https), sent exactly once.
            assert resp.headers.getall(HSTS) == ["max-age=31536000"]
            assert "nginx/" not in resp.headers.get("Server", "")  # server_tokens off
        async with s.get(nginx.https_url + "/staff") as resp:
            assert resp.status == 200 and "<html" in (await resp.text()).lower()
            assert resp.headers.getall(HSTS) == ["max-age=31536000"]
            assert "camera=(self)" in resp.headers["Permissions-Policy"]
        # The same server reached directly (plain HTTP, not through the proxy): no HSTS.
        async with s.get(server.base_url + "/healthz") as resp:
            assert resp.status == 200 and HSTS not in resp.headers
        # Plain HTTP on port "80": a permanent redirect to the same path on HTTPS.
        async with s.get(nginx.http_url + "/staff?x=1", allow_redirects=False) as resp:
            assert resp.status == 301
            assert resp.headers["Location"] == "https://127.0.0.1/staff?x=1"


async def test_nginx_forwards_the_websocket(proxied: tuple[ServerProcess, Nginx],
                                            certs: Certs) -> None:
    """Staff (from shopcall's own page: Origin is the public https origin, which shopcall
    knows by the Host nginx forwards) and a shopper talk through nginx over wss."""
    server, nginx = proxied
    async with session(certs) as s, s.post(nginx.https_url + "/api/shopper-token",
                                           json={}) as resp:
        assert resp.status == 200
        shopper_token = (await resp.json())["token"]
    staff = await wss_client(nginx.wss_url, certs, server.token(Role.STAFF, "alice"),
                             origin=nginx.https_url)
    shopper = await wss_client(nginx.wss_url, certs, shopper_token)
    try:
        staff.keep_alive()
        await staff.ok("presence.set", status="online")
        cid = (await shopper.ok("conversation.open", store="lyon", skill="guitars",
                                language="en"))["conversation"]["conversation_id"]
        await staff.expect("conversation.offered")
        await staff.ok("conversation.accept", conversation_id=cid)
        await shopper.ok("chat.send", conversation_id=cid, text="Is the D-14 in stock?")
        got = await staff.expect("chat.message")
        assert got["message"]["text"] == "Is the D-14 in stock?"
        await staff.ok("chat.send", conversation_id=cid, text="Yes, in Lyon.")
        assert (await shopper.expect("chat.message"))["message"]["text"] == "Yes, in Lyon."
        # A quiet second: the proxied connection stays up (heartbeats pass through).
        await asyncio.sleep(1.0)
        assert (await shopper.send("ping"))["type"] == "pong"
    finally:
        await staff.close()
        await shopper.close()
    # A page on another site may not open a staff connection through the proxy either.
    async with session(certs) as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(nginx.wss_url, origin="https://evil.example")
        assert refused.value.status == 403


async def test_nginx_client_address_is_believed(proxied: tuple[ServerProcess, Nginx],
                                                certs: Certs) -> None:
    """nginx's X-Forwarded-For tells clients apart (trusted_proxies = ["127.0.0.1"]): one
    client (from 127.0.0.2) is limited to 10 shopper tokens a minute, another (127.0.0.3)
    is not affected, and writing other addresses in front does not get round the limit."""
    _, nginx = proxied

    async def tokens(local: str, n: int, forwarded: str | None = None) -> list[int]:
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        statuses = []
        async with session(certs, local=local) as s:
            for _ in range(n):
                async with s.post(nginx.https_url + "/api/shopper-token", json={},
                                  headers=headers) as resp:
                    statuses.append(resp.status)
        return statuses

    assert await tokens("127.0.0.2", 11) == [200] * 10 + [429]
    assert await tokens("127.0.0.3", 3) == [200] * 3
    assert await tokens("127.0.0.2", 2, forwarded="198.51.100.9") == [429] * 2


async def test_nginx_lets_garment_uploads_through(proxied: tuple[ServerProcess, Nginx],
                                                  certs: Certs) -> None:
    """A garment PNG is megabytes (nginx's default limit is 1 MiB): bodies up to shopcall's
    own limit reach it, and shopcall (not nginx) answers one beyond it."""
    from signaling.garments_api import MAX_UPLOAD_BYTES

    server, nginx = proxied
    headers = {"Authorization": f"Bearer {server.token(Role.OPERATOR, 'ops')}",
               "Content-Type": "application/json"}
    async with session(certs) as s:
        body = b'{"name": "' + b"x" * (3 * 1024 * 1024) + b'"}'
        async with s.post(nginx.https_url + "/api/garments", data=body,
                          headers=headers) as resp:
            answer = await resp.json(content_type=None)
            assert resp.status == 400 and "error" in answer, (resp.status, answer)
        too_big = b"x" * (MAX_UPLOAD_BYTES + 1)
        async with s.post(nginx.https_url + "/api/garments", data=too_big,
                          headers=headers) as resp:
            answer = await resp.json(content_type=None)
            assert answer["error"]["code"] == "message_too_large", (resp.status, answer)
