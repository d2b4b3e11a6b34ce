"""The demo PKI of `fedcore certs`."""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509

from fedcore.cli import main
from fedcore.cli.commands import _client_certificate
from fedcore.transport.certs import client_identity, generate_pki


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_server_certificate_names_localhost_and_the_given_hosts(tmp_path: Path) -> None:
    generate_pki(tmp_path, clients=0, hosts=("coordinator", "10.1.2.3"))

    san = load(tmp_path / "server.pem").extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value

    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "coordinator"}
    assert ipaddress.ip_address("10.1.2.3") in san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)


def test_client_certificates_are_signed_by_the_ca(tmp_path: Path) -> None:
    generate_pki(tmp_path, clients=2)
    ca = load(tmp_path / "ca.pem")

    for i in (1, 2):
        cert = load(tmp_path / f"client-{i}.pem")
        cert.verify_directly_issued_by(ca)
        assert cert.subject.rfc4514_string() == f"CN=client-{i}"


def test_keys_and_token_are_private(tmp_path: Path) -> None:
    generate_pki(tmp_path, clients=1, token=True)

    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}

    assert {n: m for n, m in modes.items() if n.endswith("key.pem") or n == "token"} == {
        "ca-key.pem": 0o600, "server-key.pem": 0o600, "client-1-key.pem": 0o600, "token": 0o600
    }
    assert modes["ca.pem"] == 0o644


def test_an_existing_ca_is_kept_unless_forced(tmp_path: Path) -> None:
    generate_pki(tmp_path, clients=1)
    before = (tmp_path / "ca.pem").read_bytes()

    assert generate_pki(tmp_path, clients=1) == []
    assert (tmp_path / "ca.pem").read_bytes() == before
    assert generate_pki(tmp_path, clients=1, force=True)
    assert (tmp_path / "ca.pem").read_bytes() != before


def test_cli_writes_the_files(tmp_path: Path) -> None:
    rc = main(["certs", "--out", str(tmp_path), "--clients", "2", "--token"])

    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ca-key.pem", "ca.pem", "client-1-key.pem", "client-1.pem", "client-2-key.pem",
        "client-2.pem", "server-key.pem", "server.pem", "token",
    ]


def test_each_named_client_gets_its_own_certificate_naming_it(tmp_path: Path) -> None:
    generate_pki(tmp_path, names=("site-a", "site-b"))

    for name in ("site-a", "site-b"):
        pem = (tmp_path / f"{name}.pem").read_bytes()
        san = load(tmp_path / f"{name}.pem").extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
        assert client_identity(pem) == name
        assert san.get_values_for_type(x509.DNSName) == [name]
    assert (tmp_path / "site-a-key.pem").read_bytes() != (tmp_path / "site-b-key.pem").read_bytes()


@pytest.mark.parametrize("names", [("server",), ("a/b",), ("-x",), ("a", "a"), ("",)])
def test_bad_client_names_are_refused_before_anything_is_written(
    tmp_path: Path, names: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match="client name|distinct"):
        generate_pki(tmp_path / "out", names=names)

    assert not (tmp_path / "out").exists()


def test_client_count_and_names_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        generate_pki(tmp_path, clients=2, names=("a",))


def test_the_cli_issues_one_certificate_per_name(tmp_path: Path) -> None:
    assert main(["certs", "--out", str(tmp_path), "--names", "site-a", "site-b"]) == 0

    assert client_identity((tmp_path / "site-b.pem").read_bytes()) == "site-b"
    assert not (tmp_path / "client-1.pem").exists()


def test_a_client_takes_its_id_and_its_partitions_certificate_from_the_directory(
    tmp_path: Path
) -> None:
    generate_pki(tmp_path, clients=3)
    args = argparse.Namespace(tls_cert_dir=tmp_path, tls_cert=None, tls_key=None, client_id=None)

    _client_certificate(args, 2)  # partition 2: the third certificate

    assert (args.tls_cert, args.tls_key) == (str(tmp_path / "client-3.pem"),
                                             str(tmp_path / "client-3-key.pem"))
    assert args.client_id == "client-3"


def test_an_explicit_client_id_is_kept(tmp_path: Path) -> None:
    generate_pki(tmp_path, clients=1)
    args = argparse.Namespace(tls_cert_dir=None, tls_cert=str(tmp_path / "client-1.pem"),
                              tls_key=str(tmp_path / "client-1-key.pem"), client_id="mine")

    _client_certificate(args, 0)

    assert args.client_id == "mine"
