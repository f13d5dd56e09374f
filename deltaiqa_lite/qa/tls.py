"""DICOM over TLS for the node: the listener of ``serve`` and the SR sender (PS3.15 B.1,
the IHE ATNA secure node's transport).

Settings are three PEM files: the node's certificate and private key, and a CA
bundle. TLS 1.2 is the oldest version offered or accepted.

- Listener (``serve --tls-cert --tls-key``): presents the certificate; with
  ``--tls-ca`` every sender must present a certificate signed by that CA
  (mutual TLS), otherwise the handshake fails. A plain (non-TLS) client is
  refused at the handshake.
- SR sender (``--sr-tls``): verifies the destination's certificate and host
  name against ``--tls-ca`` (or the system's CAs when none is given) and
  presents the node's certificate when one is given.

The handshake of an incoming connection runs on that connection's thread with
a time limit, so a client that connects and stays silent cannot hold the
listener.
"""

from __future__ import annotations

import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

from deltaiqa_lite.errors import DeltaIQAError

HANDSHAKE_TIMEOUT_S = 10.0


class TLSError(DeltaIQAError):
    """TLS settings that cannot be used (missing file, key not matching, bad PEM)."""


@dataclass(frozen=True)
class TLSSettings:
    """PEM files of the node's TLS identity and of the CAs it trusts.

    Attributes
    ----------
    cert, key : path or None
        The node's certificate (chain) and private key; required for the listener,
        optional for the SR sender (client certificate).
    ca : path or None
        CA certificates: the listener requires and verifies client certificates
        against them; the sender verifies the destination against them.
    """

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None


def _base(protocol: int) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    return context


def _load_identity(context: ssl.SSLContext, settings: TLSSettings) -> None:
    if (settings.cert is None) != (settings.key is None):
        raise TLSError("--tls-cert and --tls-key go together (the certificate and its "
                       "private key)")
    if settings.cert is None:
        return
    for path in (settings.cert, settings.key):
        if not Path(path).is_file():
            raise TLSError(f"{path}: no such file (TLS certificate or key)")
    try:
        context.load_cert_chain(str(settings.cert), str(settings.key))
    except (ssl.SSLError, OSError) as error:
        raise TLSError(f"{settings.cert} / {settings.key}: cannot load the certificate and key "
                       f"({getattr(error, 'reason', None) or error})") from error


def _load_ca(context: ssl.SSLContext, settings: TLSSettings) -> None:
    if not Path(settings.ca).is_file():
        raise TLSError(f"{settings.ca}: no such file (TLS CA certificates)")
    try:
        context.load_verify_locations(cafile=str(settings.ca))
    except (ssl.SSLError, OSError) as error:
        raise TLSError(f"{settings.ca}: cannot load the CA certificates "
                       f"({getattr(error, 'reason', None) or error})") from error


def server_context(settings: TLSSettings) -> ssl.SSLContext:
    """The listener's context: our certificate; client certificates required with a CA.

    Raises
    ------
    TLSError
        No certificate and key, or files that cannot be loaded.
    """
    if settings.cert is None or settings.key is None:
        raise TLSError("a TLS listener needs --tls-cert and --tls-key")
    context = _base(ssl.PROTOCOL_TLS_SERVER)
    _load_identity(context, settings)
    if settings.ca is not None:
        _load_ca(context, settings)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(settings: TLSSettings) -> ssl.SSLContext:
    """The SR sender's context: the destination is verified (CA given, else system CAs)."""
    context = _base(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and host name check
    if settings.ca is not None:
        _load_ca(context, settings)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    _load_identity(context, settings)
    return context


def guard_listener(server, context: ssl.SSLContext) -> None:
    """Make a pynetdicom ``ThreadedAssociationServer`` speak TLS, handshaking per thread.

    pynetdicom's own ``ssl_context`` handshakes inside ``accept``, on the one thread
    that accepts every connection: a client that connects and says nothing would
    hold it. Here ``accept`` only wraps the socket; the handshake runs on the
    connection's own thread, within ``HANDSHAKE_TIMEOUT_S``, and a failed one (a
    plain client, an untrusted certificate) closes that connection with one line.
    """
    def get_request():
        client, address = server.socket.accept()
        return context.wrap_socket(client, server_side=True,
                                   do_handshake_on_connect=False), address

    finish = server.finish_request

    def finish_request(request, client_address):
        try:
            request.settimeout(HANDSHAKE_TIMEOUT_S)
            request.do_handshake()
            request.settimeout(None)
        except (ssl.SSLError, OSError) as error:
            print(f"deltaiqa-lite serve: TLS handshake with {client_address[0]} failed "
                  f"({getattr(error, 'reason', None) or error}); connection closed",
                  file=sys.stderr, flush=True)
            server.shutdown_request(request)
            return
        finish(request, client_address)

    server.get_request = get_request
    server.finish_request = finish_request
