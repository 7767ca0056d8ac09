"""Certificates and keys for the local control plane.

Called by `_cluster.LocalCluster` when it prepares a state directory, and by the
node agent (through `LocalCluster.issue_client_cert`) for node identities and
(`self_signed`, from `nodeagent._logserver`) for its log endpoint. Keys are
ECDSA P-256: every Kubernetes component accepts them and they take milliseconds to
generate, where RSA-2048 takes noticeably longer on a busy two-core machine.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The brief's shared constants: the host end of the pod bridge and the first
# address of the service CIDR (the `kubernetes` Service's ClusterIP).
POD_BRIDGE_IP = "10.244.0.1"
SERVICE_CIDR = "10.96.0.0/12"
CLUSTER_DOMAIN = "cluster.local"

_VALIDITY = datetime.timedelta(days=365)
# Clocks of freshly started processes may disagree by a little; never issue a
# certificate that is not yet valid.
_BACKDATE = datetime.timedelta(minutes=5)


# Key usages no certificate of the local cluster needs.
_UNUSED_USAGES = ("content_commitment", "key_encipherment", "data_encipherment",
                  "key_agreement", "encipher_only", "decipher_only")  # fmt: skip


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """Signatures only; a CA also signs certificates and revocation lists."""
    unused = dict.fromkeys(_UNUSED_USAGES, False)
    return x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca, **unused)


def service_ip(service_cidr: str = SERVICE_CIDR) -> str:
    """The ClusterIP of the `kubernetes` Service: the first host of the range."""
    return str(next(ipaddress.ip_network(service_cidr).hosts()))


def apiserver_sans(
    extra_ips: Iterable[str] = (),
    extra_dns: Iterable[str] = (),
    *,
    service_cidr: str = SERVICE_CIDR,
    cluster_domain: str = CLUSTER_DOMAIN,
) -> tuple[list[str], list[str]]:
    """DNS names and IP addresses the kube-apiserver serving certificate must carry.

    Clients reach the API as 127.0.0.1/localhost (host tools), as 10.244.0.1 (pods
    through the bridge) and as the `kubernetes` Service (in-cluster clients).
    """
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    dns.append(f"kubernetes.default.svc.{cluster_domain}")
    ips = ["127.0.0.1", service_ip(service_cidr), POD_BRIDGE_IP]
    for name in extra_dns:
        if name not in dns:
            dns.append(name)
    for ip in extra_ips:
        ip = str(ipaddress.ip_address(ip))  # rejects typos early, with the bad value
        if ip not in ips:
            ips.append(ip)
    return dns, ips


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as files on disk (PEM)."""

    cert: Path
    key: Path

    def load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        key = serialization.load_pem_private_key(self.key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.key}: expected an EC private key")
        return cert, key


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # Private keys are created 0600 from the start, not chmod-ed after the write.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    validity: datetime.timedelta = _VALIDITY,
) -> x509.CertificateBuilder:
    """A certificate of `key` for `subject`, backdated a little, before its extensions."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + validity)
    )


def _save(pair: KeyPair, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    _write(pair.key, _key_pem(key), private=True)
    _write(pair.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)


def create_ca(pair: KeyPair, common_name: str) -> None:
    key = _new_key()
    subject = _name(common_name)
    cert = (
        _builder(subject, subject, key, 10 * _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _save(pair, cert, key)


def issue_cert(
    ca: KeyPair,
    pair: KeyPair,
    common_name: str,
    *,
    organizations: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
) -> None:
    """Sign a leaf certificate for `common_name` with the CA in `ca`.

    Kubernetes reads the user name from CN and the groups from O, so a client
    certificate's subject *is* its identity (e.g. O=system:masters for admin).
    """
    if not (server or client):
        raise ValueError("a certificate must be for server use, client use, or both")
    ca_cert, ca_key = ca.load()
    key = _new_key()
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        _builder(_name(common_name, organizations), ca_cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if dns_names or ip_addresses:
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _save(pair, cert, key)


def self_signed(pair: KeyPair, common_name: str, hosts: Iterable[str]) -> None:
    """A serving certificate for `hosts` (IP addresses or DNS names) that signs
    itself: the node agent's log endpoint, whose certificate the API server
    does not verify."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = _new_key()
    subject = _name(common_name)
    cert = (
        _builder(subject, subject, key)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    _save(pair, cert, key)


def create_signing_key(private: Path, public: Path) -> None:
    """The service-account token signing key pair (apiserver signs, everyone verifies)."""
    key = _new_key()
    _write(private, _key_pem(key), private=True)
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write(public, pub, private=False)


def cert_sans(path: Path) -> tuple[list[str], list[str]]:
    """The DNS names and IPs a PEM certificate carries (for checks and tests)."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return (
        list(ext.get_values_for_type(x509.DNSName)),
        [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)],
    )


def cert_subject(path: Path) -> tuple[str, list[str]]:
    """(CN, [O...]) of a PEM certificate: the user and groups Kubernetes sees."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(cn[0].value) if cn else "", [str(o.value) for o in orgs]
