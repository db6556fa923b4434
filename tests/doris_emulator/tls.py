"""A throwaway certificate authority for the emulator's TLS mode, made with the openssl CLI at test time.

Nothing is downloaded and no key leaves the temporary directory: a CA, then a server certificate it
signs for 127.0.0.1, localhost and the emulator's host. Clients trust the emulator by passing
`ca_file` (sinker's `doris.ca_file`); a client that trusts only the system CAs fails the handshake.
"""
from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass
class EmulatorCA:
    dir: str
    ca_file: str       # the CA certificate (PEM) clients must trust
    cert_file: str     # the server certificate chain the emulator presents
    key_file: str

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def make_test_ca(host: str = "127.0.0.1", days: int = 2) -> EmulatorCA:
    """CA + server certificate in a new temporary directory (remove() it when done)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the emulator's TLS mode needs the openssl command line tool; install openssl "
                           "or run the emulator without tls=True")
    d = Path(tempfile.mkdtemp(prefix="doris-emu-tls-"))
    names = {"DNS:localhost", "IP:127.0.0.1"}
    try:
        ipaddress.ip_address(host)
        names.add(f"IP:{host}")
    except ValueError:
        names.add(f"DNS:{host}")

    def run(*args: str) -> None:
        r = subprocess.run([openssl, *args], cwd=d, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed while making the emulator's test CA: {r.stderr.strip()}")

    run("req", "-x509", *_EC, "-keyout", "ca.key", "-out", "ca.pem", "-days", str(days),
        "-subj", "/CN=Doris emulator test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *_EC, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={host}")
    (d / "server.ext").write_text(
        f"subjectAltName={','.join(sorted(names))}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", str(days), "-extfile", "server.ext")
    return EmulatorCA(str(d), str(d / "ca.pem"), str(d / "server.pem"), str(d / "server.key"))
