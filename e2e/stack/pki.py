"""Certificates, static tokens and kubeconfigs of the local stack.

Why the ``openssl`` CLI: it is on every Debian machine, while the ``cryptography`` package is not
a dependency of the project. EC P-256 keys keep generation under a second.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

SERVICE_IP = "10.96.0.1"  # first address of the service CIDR: the `kubernetes` Service


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _leaf(pki: Path, name: str, cn: str, sans: list[str], org: str = "") -> None:
    """An EC key and a CA-signed certificate usable for both server and client auth."""
    subj = f"/CN={cn}" + (f"/O={org}" if org else "")
    ext = pki / f"{name}.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n" + (f"subjectAltName={','.join(sans)}\n" if sans else "")
    )
    _openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        subj,
        cwd=pki,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "3650",
        "-extfile",
        ext.name,
        "-out",
        f"{name}.crt",
        cwd=pki,
    )


def make_pki(pki: Path) -> None:
    """CA, serving/client certs and the service-account key pair (kept across restarts)."""
    pki.mkdir(parents=True, exist_ok=True)
    if (pki / "done").exists():
        return
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=modelship-stack-ca",
        cwd=pki,
    )
    local = ["IP:127.0.0.1", "DNS:localhost"]
    svc = [f"DNS:kubernetes{s}" for s in ("", ".default", ".default.svc", ".default.svc.cluster.local")]
    _leaf(pki, "apiserver", "kube-apiserver", [*local, f"IP:{SERVICE_IP}", *svc])
    _leaf(pki, "etcd", "etcd", local)
    _leaf(pki, "apiserver-etcd-client", "kube-apiserver-etcd-client", [])
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for p in pki.iterdir():
        p.chmod(0o600)
    (pki / "done").write_text("ok\n")


# user -> groups; every component authenticates with a static token of its own.
USERS: dict[str, list[str]] = {
    "admin": ["system:masters"],
    "system:kube-controller-manager": [],
    "system:kube-scheduler": [],
    "kwok": ["system:masters"],  # kwok writes node and pod status for many nodes
    "nobody": [],  # authenticated but granted nothing: lets tests prove RBAC is enforced
}


def make_tokens(pki: Path) -> dict[str, str]:
    """Write the ``--token-auth-file`` (token,user,uid,"groups") and return user -> token."""
    tokens = {user: secrets.token_hex(24) for user in USERS}
    rows = [f'{tokens[u]},{u},{u},"{",".join(g)}"' for u, g in USERS.items()]
    path = pki / "tokens.csv"
    path.write_text("\n".join(rows) + "\n")
    path.chmod(0o600)
    return tokens


def write_kubeconfig(path: Path, server: str, ca: Path, token: str, user: str = "admin") -> None:
    """A kubeconfig (JSON is valid YAML) with the CA file and a bearer token."""
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "modelship",
        "clusters": [{"name": "modelship", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "modelship", "context": {"cluster": "modelship", "user": user}}],
    }
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    path.chmod(0o600)
