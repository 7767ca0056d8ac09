"""Certificates, kubeconfigs and start-up checks of the local control plane
(corral_local.localcluster), without starting anything."""

from __future__ import annotations

import base64
import re
import ssl
from pathlib import Path

import pytest
import yaml

from corral_local.localcluster import ClusterError, LocalCluster, _pki
from corral_local.localcluster._kubeconfig import kubeconfig_server, render_kubeconfig


def test_apiserver_sans_cover_loopback_the_pod_bridge_and_the_kubernetes_service() -> None:
    dns, ips = _pki.apiserver_sans()
    assert set(dns) == {
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    }
    assert set(ips) == {"127.0.0.1", "10.96.0.1", "10.244.0.1"}


def test_extra_sans_are_added_once_and_bad_ips_are_rejected() -> None:
    dns, ips = _pki.apiserver_sans(extra_ips=["10.244.0.1", "192.168.7.2"], extra_dns=["dev.box"])
    assert ips.count("10.244.0.1") == 1 and "192.168.7.2" in ips and "dev.box" in dns
    with pytest.raises(ValueError, match=re.escape("10.300.0.1")):
        _pki.apiserver_sans(extra_ips=["10.300.0.1"])


def test_the_service_ip_is_the_first_host_of_the_service_cidr() -> None:
    assert _pki.service_ip("10.96.0.0/12") == "10.96.0.1"
    assert _pki.service_ip("172.20.0.0/16") == "172.20.0.1"


def test_a_serving_certificate_carries_its_sans_and_chains_to_the_ca(tmp_path: Path) -> None:
    ca = _pki.KeyPair(tmp_path / "ca.crt", tmp_path / "ca.key")
    _pki.create_ca(ca, "test-ca")
    leaf = _pki.KeyPair(tmp_path / "apiserver.crt", tmp_path / "apiserver.key")
    dns, ips = _pki.apiserver_sans()
    _pki.issue_cert(ca, leaf, "kube-apiserver", server=True, dns_names=dns, ip_addresses=ips)

    assert _pki.cert_sans(leaf.cert) == (dns, ips)
    assert (leaf.key.stat().st_mode & 0o777) == 0o600
    # The standard library accepts the pair and the CA as a trust root.
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    ctx.load_cert_chain(str(leaf.cert), str(leaf.key))


def test_a_client_certificate_subject_is_the_kubernetes_user_and_groups(tmp_path: Path) -> None:
    ca = _pki.KeyPair(tmp_path / "ca.crt", tmp_path / "ca.key")
    _pki.create_ca(ca, "test-ca")
    node = _pki.KeyPair(tmp_path / "node.crt", tmp_path / "node.key")
    _pki.issue_cert(ca, node, "system:node:n1", organizations=["system:nodes"], client=True)
    assert _pki.cert_subject(node.cert) == ("system:node:n1", ["system:nodes"])
    assert _pki.cert_sans(node.cert) == ([], [])


def test_a_certificate_must_say_whether_it_serves_or_authenticates(tmp_path: Path) -> None:
    ca = _pki.KeyPair(tmp_path / "ca.crt", tmp_path / "ca.key")
    _pki.create_ca(ca, "test-ca")
    with pytest.raises(ValueError, match="server use, client use"):
        _pki.issue_cert(ca, _pki.KeyPair(tmp_path / "x.crt", tmp_path / "x.key"), "x")


def test_a_kubeconfig_embeds_its_credentials_and_names_one_current_context() -> None:
    text = render_kubeconfig(
        server="https://127.0.0.1:6443",
        ca_pem=b"CA",
        client_cert_pem=b"CERT",
        client_key_pem=b"KEY",
        user="corral-admin",
        namespace="team-a",
    )
    doc = yaml.safe_load(text)
    assert doc["current-context"] == "corral-admin@corral"
    (context,) = doc["contexts"]
    assert context["context"] == {
        "cluster": "corral",
        "user": "corral-admin",
        "namespace": "team-a",
    }
    cluster = doc["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CA"
    user = doc["users"][0]["user"]
    assert base64.b64decode(user["client-key-data"]) == b"KEY"


def _kubeconfig(server: str) -> str:
    """A kubeconfig for `server` with empty credentials."""
    return render_kubeconfig(
        server=server, ca_pem=b"", client_cert_pem=b"", client_key_pem=b"", user="u"
    )


def test_a_kubeconfig_refuses_a_plain_http_server() -> None:
    with pytest.raises(ValueError, match="https://"):
        _kubeconfig("http://127.0.0.1:8080")


def test_the_server_of_a_kubeconfig_is_read_from_its_current_context(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(_kubeconfig("https://10.0.0.5:443"))
    assert kubeconfig_server(path) == "https://10.0.0.5:443"
    path.write_text("apiVersion: v1\nkind: Config\ncurrent-context: gone\ncontexts: []\n")
    with pytest.raises(ValueError, match="current-context 'gone'"):
        kubeconfig_server(path)


def test_starting_without_binaries_names_them_and_the_make_target(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "state", bin_dir=tmp_path / "empty-bin", log=lambda _: None)
    with pytest.raises(ClusterError, match=r"missing etcd, kube-apiserver.*make cluster-bins"):
        cluster.start()
    assert not (tmp_path / "state").exists()
