"""Listener options checked before the listener starts: the default character set, the
allow-list of senders, TLS.

Every check raises :class:`OptionError` with a one-line message naming the option and
the bad value, so ``hie listen mllp`` refuses a bad configuration at start instead of
failing on the first message.

Senders file (``--senders``, JSON): which facility a sender is, and from where it may
send. A message is accepted only from a listed sender::

    {"senders": [
      {"facility": "1312345670",          # 10-digit institution code (custodian of its data)
       "msh": ["HIS123|SEND", "LAB"],     # "MSH-3|MSH-4", or "MSH-4" for any application
       "addresses": ["10.1.2.3", "10.1.3.0/24"],   # optional: any address when absent
       "certificate_cn": "his.hospital-a.example"} # optional: TLS client certificate CN
    ]}

Without a senders file every sender is accepted under ``--facility`` (the listener binds
to loopback unless told otherwise, so only local processes can reach it).
"""

from __future__ import annotations

import codecs
import ipaddress
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.hl7v2.errors import V2Error
from adapters.hl7v2.ids import check_facility


class OptionError(ValueError):
    """A listener option that cannot be used (one line, names the option)."""


def check_charset(name: str) -> str:
    """The Python codec for ``--default-charset``: a known text encoding that keeps the
    ASCII bytes HL7 delimiters and MSH are written in (not UTF-16, not rot13)."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise OptionError(f"--default-charset: unknown character set {name!r} "
                          "(use a codec such as ascii, utf-8, shift_jis, iso2022_jp)") from None
    if not getattr(info, "_is_text_encoding", True):
        raise OptionError(f"--default-charset: {name!r} is not a text encoding")
    try:
        ascii_safe = "MSH|^~\\&\r".encode(info.name) == b"MSH|^~\\&\r"
    except (UnicodeError, LookupError):
        ascii_safe = False
    if not ascii_safe:
        raise OptionError(f"--default-charset: {name!r} does not encode HL7 delimiters as ASCII")
    return info.name


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a connection."""

    address: str = ""
    certificate_cn: str | None = None


@dataclass(frozen=True)
class Sender:
    facility: str
    msh: tuple[str, ...]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    certificate_cn: str | None = None

    def matches(self, app: str, facility: str) -> bool:
        return f"{app}|{facility}" in self.msh or facility in self.msh

    def allows(self, peer: Peer) -> str | None:
        """None if ``peer`` may send as this sender, else why not."""
        if self.networks:
            try:
                addr = ipaddress.ip_address(peer.address)
            except ValueError:
                return f"address {peer.address!r} is not an IP address"
            if not any(addr in net for net in self.networks):
                return f"address {peer.address} is not allowed for this sender"
        if self.certificate_cn is not None and peer.certificate_cn != self.certificate_cn:
            return f"client certificate {peer.certificate_cn!r} is not this sender's"
        return None


class SenderRefused(V2Error):
    """The message comes from a sender the allow-list does not admit (AR)."""

    reject = True


@dataclass(frozen=True)
class Senders:
    """The allow-list (``entries``) or, without one, every sender as ``default``."""

    default: str | None = None
    entries: tuple[Sender, ...] = field(default_factory=tuple)

    def facility_for(self, app: str, facility: str, peer: Peer) -> str:
        """The institution code a message from ``app|facility`` at ``peer`` is stored
        under; raises :class:`SenderRefused`."""
        if not self.entries:
            assert self.default is not None
            return self.default
        candidates = [s for s in self.entries if s.matches(app, facility)]
        if not candidates:
            raise SenderRefused("MSH-4", f"sender {app}|{facility} (MSH-3|MSH-4) is not registered at this listener")
        reasons = []
        for sender in candidates:
            why = sender.allows(peer)
            if why is None:
                return sender.facility
            reasons.append(why)
        raise SenderRefused("MSH-4", f"sender {app}|{facility}: {reasons[0]}")


def load_senders(path: Path | None, default: str | None) -> Senders:
    """Parse ``--senders`` (see the module docstring); without it ``--facility`` is needed."""
    if default is not None:
        _facility(default, "--facility")
    if path is None:
        if default is None:
            raise OptionError("--facility is required without --senders")
        return Senders(default=default)
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except OSError as err:
        raise OptionError(f"--senders: cannot read {path}: {err.strerror}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise OptionError(f"--senders: {path} is not JSON: {err}") from None
    items = data.get("senders") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise OptionError(f"--senders: {path} must hold {{\"senders\": [...]}} with at least one sender")
    return Senders(default=default, entries=tuple(_sender(item, f"{path}: senders[{i}]")
                                                  for i, item in enumerate(items)))


def _sender(item: Any, where: str) -> Sender:
    if not isinstance(item, dict):
        raise OptionError(f"{where} must be an object")
    unknown = set(item) - {"facility", "msh", "addresses", "certificate_cn"}
    if unknown:
        raise OptionError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    msh = item.get("msh")
    if not isinstance(msh, list) or not msh or not all(isinstance(m, str) and m for m in msh):
        raise OptionError(f"{where}.msh must be a non-empty list of \"MSH-3|MSH-4\" or \"MSH-4\" strings")
    networks = []
    for j, a in enumerate(item.get("addresses") or ()):
        try:
            networks.append(ipaddress.ip_network(str(a), strict=False))
        except ValueError:
            raise OptionError(f"{where}.addresses[{j}]: {a!r} is not an IP address or network") from None
    cn = item.get("certificate_cn")
    if cn is not None and not isinstance(cn, str):
        raise OptionError(f"{where}.certificate_cn must be a string")
    return Sender(facility=_facility(item.get("facility"), f"{where}.facility"), msh=tuple(msh),
                  networks=tuple(networks), certificate_cn=cn)


def _facility(code: Any, where: str) -> str:
    try:
        return check_facility(code if isinstance(code, str) else "")
    except V2Error as err:
        raise OptionError(f"{where}: {err.reason}") from None


def tls_context(cert: Path | None, key: Path | None, client_ca: Path | None) -> ssl.SSLContext | None:
    """A server TLS context (TLS 1.2+), or None without ``--tls-cert``. With
    ``--tls-client-ca`` every client must present a certificate issued by that CA."""
    if cert is None:
        if key is not None or client_ca is not None:
            raise OptionError("--tls-key and --tls-client-ca need --tls-cert")
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    except (OSError, ssl.SSLError) as err:
        raise OptionError(f"--tls-cert/--tls-key: cannot load {cert}: {err}") from None
    if client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(client_ca))
        except (OSError, ssl.SSLError) as err:
            raise OptionError(f"--tls-client-ca: cannot load {client_ca}: {err}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def peer_of(writer: Any) -> Peer:
    """The :class:`Peer` of an asyncio stream (address; CN of a verified client certificate)."""
    name = writer.get_extra_info("peername")
    address = name[0] if isinstance(name, tuple) and name else ""
    cert = writer.get_extra_info("peercert")
    cn = None
    if cert:
        for rdn in cert.get("subject", ()):
            for attr, value in rdn:
                if attr == "commonName":
                    cn = value
    return Peer(address=address, certificate_cn=cn)
