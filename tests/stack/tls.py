"""A throwaway PKI for the secure test broker, made with the openssl command line at test time
(nothing downloaded, nothing kept): a CA, a broker certificate for 127.0.0.1/localhost signed by
it, a client certificate with a password-protected key (mTLS), and a second, unrelated CA that a
client can be pointed at to see verification fail.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "2"     # the files live for one test session


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca_cert: Path              # trusts the broker and client certificates
    broker_cert: Path
    broker_key: Path           # unencrypted PKCS#8, read by the broker's PEM keystore
    client_cert: Path
    client_key: Path           # encrypted with client_key_password
    client_key_password: str
    other_ca_cert: Path        # signed nothing here: a client trusting only it rejects the broker


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if not exe:
        raise RuntimeError("`openssl` not found on PATH: the TLS tests generate their certificates "
                           "with it (Debian: apt-get install openssl)")
    proc = subprocess.run([exe, *args], cwd=str(cwd), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}")


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.pem", "-days", DAYS, "-subj", f"/CN=sinker test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=d)


def _leaf(d: Path, name: str, cn: str, ext: str, password: str | None = None) -> None:
    encrypt = ("-aes-256-cbc", "-pass", f"pass:{password}") if password else ()
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
             "-out", f"{name}.key", *encrypt, cwd=d)
    passin = ("-passin", f"pass:{password}") if password else ()
    _openssl("req", "-new", "-key", f"{name}.key", *passin, "-subj", f"/CN={cn}",
             "-out", f"{name}.csr", cwd=d)
    (d / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", DAYS, "-extfile", f"{name}.ext", "-out", f"{name}.pem",
             cwd=d)


def make_test_pki(directory: str | Path, client_key_password: str = "client-key-pw") -> Pki:
    """Write the CA, broker and client files into `directory` (created if needed)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "other-ca")
    _leaf(d, "broker", "localhost",
          "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
          "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
          "authorityKeyIdentifier=keyid\n")
    _leaf(d, "client", "sinker-client",
          "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
          "extendedKeyUsage=clientAuth\nauthorityKeyIdentifier=keyid\n",
          client_key_password)
    return Pki(d, d / "ca.pem", d / "broker.pem", d / "broker.key", d / "client.pem",
                   d / "client.key", client_key_password, d / "other-ca.pem")
