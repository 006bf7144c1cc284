"""Listener options: checked at start (charset, senders file, TLS files), loopback by
default, the allow-list of senders (address and MSH-3/MSH-4 per facility), MLLP over TLS
with client certificates (a CA made here with ``cryptography``)."""

from __future__ import annotations

import datetime as dt
import inspect
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.feed import Feed
from adapters.hl7v2.mapping import map_message
from adapters.mllp.options import OptionError, load_senders, tls_context
from adapters.mllp.server import Processor, frame, run_in_thread
from hie.ingest import existing, list_failures

from .mllp_support import FACILITY, adt_message, msa, read_acks

OTHER = "1312345670"


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HIE_DATA_DIR=str(tmp_path / "data"), HIE_DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite'}")
    return subprocess.run([sys.executable, "-m", "hie.cli", "listen", "mllp", "--port", "0", *args], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "needle"), [
    (("--facility", FACILITY, "--default-charset", "bogus-set"), "unknown character set 'bogus-set'"),
    (("--facility", FACILITY, "--default-charset", "utf-16"), "does not encode HL7 delimiters as ASCII"),
    (("--facility", "12345"), "--facility: facility code must be the 10-digit"),
    ((), "--facility is required without --senders"),
    (("--senders", "/nonexistent/senders.json"), "--senders: cannot read /nonexistent/senders.json"),
    (("--facility", FACILITY, "--tls-key", "/nonexistent/key.pem"), "--tls-key and --tls-client-ca need --tls-cert"),
    (("--senders", "CN_SENDERS"), "certificate_cn needs client certificates"),
])
def test_bad_options_are_refused_at_start_with_one_line(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    if "CN_SENDERS" in args:  # a sender bound to a certificate on a listener without client certificates
        cn = _senders(tmp_path, [{"facility": FACILITY, "msh": ["HIS|HOSP"], "certificate_cn": "his.example"}])
        args = tuple(str(cn) if a == "CN_SENDERS" else a for a in args)
    done = _cli(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "x.sqlite").exists()  # refused before opening anything


def test_processor_refuses_an_unknown_charset(sqlite_node) -> None:  # noqa: ANN001
    with pytest.raises(OptionError, match="bogus"):
        Processor(sqlite_node, FACILITY, default_charset="bogus")
    assert Processor(sqlite_node, FACILITY, default_charset="Shift-JIS").default_charset == "shift_jis"


def test_the_listener_binds_loopback_by_default() -> None:
    from adapters.cli import listen_mllp
    from adapters.mllp.server import serve

    assert inspect.signature(listen_mllp).parameters["host"].default.default == "127.0.0.1"
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"


def _senders(tmp_path: Path, entries: list[dict]) -> Path:
    path = tmp_path / "senders.json"
    path.write_text(json.dumps({"senders": entries}), "utf-8")
    return path


@pytest.mark.parametrize(("entries", "needle"), [
    ([{"facility": "99", "msh": ["A|B"]}], "senders[0].facility: facility code must be the 10-digit"),
    ([{"facility": FACILITY, "msh": []}], "senders[0].msh must be a non-empty list"),
    ([{"facility": FACILITY, "msh": ["A|B"], "addresses": ["10.0.0.300"]}], "senders[0].addresses[0]"),
    ([{"facility": FACILITY, "msh": ["A|B"], "adresses": ["10.0.0.1"]}], "unknown key 'adresses'"),
    ([], "at least one sender"),
])
def test_a_bad_senders_file_is_refused(tmp_path: Path, entries: list[dict], needle: str) -> None:
    with pytest.raises(OptionError) as exc:
        load_senders(_senders(tmp_path, entries), None)
    assert needle in str(exc.value)
    (tmp_path / "bad.json").write_text("{not json", "utf-8")
    with pytest.raises(OptionError, match="is not JSON"):
        load_senders(tmp_path / "bad.json", None)


def _patient(node, message: bytes, facility: str) -> str:  # noqa: ANN001
    return "Patient/" + map_message(message, facility=facility, source="t", ids=Feed(node).ids).patient_id


def test_allow_list_admits_registered_senders_and_refuses_others_with_ar(sqlite_node, tmp_path: Path) -> None:  # noqa: ANN001
    node = sqlite_node
    senders = load_senders(_senders(tmp_path, [
        {"facility": OTHER, "msh": ["HIS|HOSP"], "addresses": ["127.0.0.1"]},
        {"facility": FACILITY, "msh": ["LAB"], "addresses": ["10.0.0.0/8"]},
    ]), None)
    ok = adt_message("AL-1", "P-AL-1", app="HIS", facility="HOSP")
    unknown = adt_message("AL-2", "P-AL-2", app="OTHER", facility="NOWHERE")
    wrong_address = adt_message("AL-3", "P-AL-3", app="ANY", facility="LAB")
    proc = Processor(node, senders=senders)
    port, stop = run_in_thread(proc)
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(frame(ok) + frame(unknown) + frame(wrong_address))
            acks = read_acks(sock, 3)
    finally:
        stop()
    assert [msa(a)[1] for a in acks] == ["AA", "AR", "AR"]
    assert "OTHER|NOWHERE (MSH-3|MSH-4) is not registered" in msa(acks[1])[3].replace("\\F\\", "|")
    assert "address 127.0.0.1 is not allowed" in msa(acks[2])[3]
    assert existing(node, [_patient(node, ok, OTHER)])  # stored as the registered facility's
    assert not existing(node, [_patient(node, unknown, FACILITY), _patient(node, wrong_address, FACILITY)])
    kept = {bytes(f.payload) for f in list_failures(node, channel="mllp")}
    assert kept == {unknown, wrong_address}


# -- TLS ---------------------------------------------------------------------------------


def _pki(tmp_path: Path) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        (tmp_path / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (tmp_path / f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def issue(cn: str, issuer: x509.Name, issuer_key, *, ca: bool = False, server: bool = False):  # noqa: ANN001, ANN202
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
             .not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                critical=False)
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        elif not ca:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        return b.sign(issuer_key or key, hashes.SHA256()), key

    ca_cert, ca_key = issue("Test HIE CA", name("Test HIE CA"), None, ca=True)
    write("ca", ca_cert, ca_key)
    for stem, cn, server in (("server", "mllp.hie.example", True), ("client", "his.hospital.example", False),
                             ("intruder", "other.example", False)):
        cert, key = issue(cn, ca_cert.subject, ca_key, server=server)
        write(stem, cert, key)
    return {p.stem + p.suffix: p for p in tmp_path.iterdir()}


def _tls_send(port: int, pki: dict[str, Path], message: bytes, client: str | None) -> list[str]:
    ctx = ssl.create_default_context(cafile=str(pki["ca.pem"]))
    if client:
        ctx.load_cert_chain(str(pki[f"{client}.pem"]), str(pki[f"{client}.key"]))
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(frame(message))
        return read_acks(sock, 1)


def test_mllp_over_tls_requires_a_client_certificate_from_the_ca(sqlite_node, tmp_path: Path) -> None:  # noqa: ANN001
    pki = _pki(tmp_path)
    ctx = tls_context(pki["server.pem"], pki["server.key"], pki["ca.pem"])
    senders = load_senders(_senders(tmp_path, [
        {"facility": OTHER, "msh": ["HIS|HOSP"], "certificate_cn": "his.hospital.example"}]), None)
    proc = Processor(sqlite_node, senders=senders)
    port, stop = run_in_thread(proc, ssl_context=ctx)
    try:
        (ack,) = _tls_send(port, pki, adt_message("TLS-1", "P-TLS-1", app="HIS", facility="HOSP"), "client")
        assert msa(ack)[1:3] == ["AA", "TLS-1"]
        # a valid certificate of another holder may not send as this sender
        (ack,) = _tls_send(port, pki, adt_message("TLS-2", "P-TLS-2", app="HIS", facility="HOSP"), "intruder")
        assert msa(ack)[1] == "AR" and "client certificate 'other.example' is not this sender's" in msa(ack)[3]
        # no client certificate: the handshake fails, nothing is processed
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            acks = _tls_send(port, pki, adt_message("TLS-3", "P-TLS-3", app="HIS", facility="HOSP"), None)
            assert acks == []
            raise ConnectionError("no ACK without a client certificate")
        # plain TCP to the TLS port: no ACK
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(frame(adt_message("TLS-4", "P-TLS-4", app="HIS", facility="HOSP")))
            assert read_acks(sock, 1, timeout=5) == []
    finally:
        stop()
    assert proc.stats.accepted == 1 and proc.stats.received == 2


def test_tls_files_are_checked_at_start(tmp_path: Path) -> None:
    (tmp_path / "empty.pem").write_text("", "ascii")
    with pytest.raises(OptionError, match="--tls-cert/--tls-key: cannot load"):
        tls_context(tmp_path / "empty.pem", None, None)
    assert tls_context(None, None, None) is None


@pytest.mark.parametrize(("args", "code", "needle"), [
    (("ingest", "failures", "--status", "bogus"), 2, "--status: 'bogus' is not one of failed, replayed, all"),
    (("ingest", "failures", "--channel", "fax"), 2, "--channel: 'fax' is not one of load, ssmix2, mllp"),
    (("ingest", "replay", "--channel", "fax"), 2, "--channel: 'fax' is not one of"),
    (("ingest", "replay", "424242"), 1, "no ingest failure with id 424242"),
    (("ingest", "replay", "--default-charset", "nope"), 2, "--default-charset: unknown character set 'nope'"),
    (("ingest", "prune-mllp", "--days", "0"), 2, "--days: 0 is not a positive number of days"),
])
def test_feed_command_mistakes_are_one_line_and_a_non_zero_exit(tmp_path: Path, args: tuple[str, ...], code: int,
                                                                needle: str) -> None:
    env = dict(os.environ, HIE_DATA_DIR=str(tmp_path / "data"), HIE_DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite'}")
    if code == 1:  # a replay needs a node (the CLI refuses to act on a new, empty region)
        subprocess.run([sys.executable, "-m", "hie.cli", "db", "upgrade"], env=env, capture_output=True, check=True)
    done = subprocess.run([sys.executable, "-m", "hie.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == code, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1] == f"error: {needle}" or needle in lines[-1], done.stderr
    assert "Traceback" not in done.stderr + done.stdout
