"""Certificates for the local control plane, minted with ``cryptography``.

A real cluster's PKI in miniature, so that everything talks TLS with client
certificates exactly as it would under kubeadm or kind: kubectl and the agent
authenticate as ``admin`` in ``system:masters``, the apiserver authenticates to
the agent's log server with its kubelet-client certificate, and service-account
tokens are signed with a key of their own. ECDSA P-256 keys keep minting in the
milliseconds (RSA-2048 costs ~100 ms a key on a slow CI core).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The first address of the Service range (nodeconfig.SERVICE_CIDR): the `kubernetes` Service.
APISERVER_SERVICE_IP = "198.19.0.1"
_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterCerts:
    """Paths of every PEM file the control plane and the agent are started with."""

    ca: CertPair
    apiserver: CertPair
    admin: CertPair
    kubelet_client: CertPair
    agent_serving: CertPair
    front_proxy_ca: CertPair
    front_proxy_client: CertPair
    sa_private_key: Path
    sa_public_key: Path


@dataclass(frozen=True)
class _Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, orgs: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _validity() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(hours=1), now + _VALIDITY


def make_ca(common_name: str) -> _Issued:
    key = _new_key()
    not_before, not_after = _validity()
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issued(key, cert)


def make_leaf(
    ca: _Issued,
    common_name: str,
    *,
    orgs: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
    dns_names: Sequence[str] = (),
    ips: Sequence[str] = (),
) -> _Issued:
    key = _new_key()
    not_before, not_after = _validity()
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, orgs))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=True, key_cert_sign=False,
                crl_sign=False, content_commitment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return _Issued(key, builder.sign(ca.key, hashes.SHA256()))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(directory: Path, stem: str, issued: _Issued) -> CertPair:
    pair = CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert.write_bytes(issued.cert.public_bytes(serialization.Encoding.PEM))
    pair.key.touch(mode=0o600)
    pair.key.write_bytes(_key_pem(issued.key))
    return pair


def mint_cluster_certs(
    directory: Path, node_name: str = "local-node", extra_ips: Sequence[str] = ()
) -> ClusterCerts:
    """Write a fresh PKI into ``directory`` and return the paths.

    Always fresh: certificates are cheap and a cluster's workdir is new each start,
    so there is no rotation or reuse logic to get wrong. ``extra_ips`` (the real node's IP)
    go into the apiserver's and the node's serving certificates: `kubectl logs` reaches the
    kubelet at its node IP and checks it against the certificate.
    """
    extra = [ip for ip in extra_ips if ip != "127.0.0.1"]
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca("taskforge-local-ca")
    front_ca = make_ca("taskforge-front-proxy-ca")
    apiserver = make_leaf(
        ca, "kube-apiserver", server=True,
        dns_names=[
            "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ],
        ips=["127.0.0.1", APISERVER_SERVICE_IP, *extra],
    )
    admin = make_leaf(ca, "admin", orgs=["system:masters"], client=True)
    # O=system:masters lets the apiserver's proxy to the log server pass any authz.
    kubelet_client = make_leaf(
        ca, "kube-apiserver-kubelet-client", orgs=["system:masters"], client=True
    )
    agent_serving = make_leaf(
        ca, f"system:node:{node_name}", orgs=["system:nodes"], server=True,
        dns_names=["localhost", node_name], ips=["127.0.0.1", *extra],
    )
    front_client = make_leaf(front_ca, "front-proxy-client", client=True)
    sa_key = _new_key()
    sa_private = directory / "sa.key"
    sa_private.touch(mode=0o600)
    sa_private.write_bytes(_key_pem(sa_key))
    sa_public = directory / "sa.pub"
    sa_public.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ClusterCerts(
        ca=_write(directory, "ca", ca),
        apiserver=_write(directory, "apiserver", apiserver),
        admin=_write(directory, "admin", admin),
        kubelet_client=_write(directory, "kubelet-client", kubelet_client),
        agent_serving=_write(directory, "agent-serving", agent_serving),
        front_proxy_ca=_write(directory, "front-proxy-ca", front_ca),
        front_proxy_client=_write(directory, "front-proxy-client", front_client),
        sa_private_key=sa_private,
        sa_public_key=sa_public,
    )
