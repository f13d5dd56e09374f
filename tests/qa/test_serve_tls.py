"""Issue 24, item 9: DICOM TLS for ``serve`` and for SR sending.

Real parts: DCMTK's ``echoscu``/``storescu`` built with OpenSSL (``+tls``), pynetdicom as a
TLS client and as a TLS Storage SCP for SRs, and certificates made by the test
(``cryptography``). A plain client must be refused on the TLS port, and a client whose
certificate the node's CA did not sign must be refused when ``--tls-ca`` is given.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom", reason="serve needs the 'net' extra (pynetdicom)")
pytest.importorskip("cryptography", reason="the test makes its certificates with cryptography")

from pynetdicom import AE
from pynetdicom.sop_class import Verification
from benchmarks.node import dcmtk_tool
from qa_builders import StorageSCP, write_ct
from tls_certs import make_certs

from deltaiqa_lite import Scorer
from deltaiqa_lite.cli import main
from deltaiqa_lite.qa.ingest import Ingestor
from deltaiqa_lite.qa.log import QALog
from deltaiqa_lite.qa.outbox import Outbox
from deltaiqa_lite.qa.serve import QAServer, ServeConfig
from deltaiqa_lite.qa.tls import TLSError, TLSSettings, client_context, server_context

ECHOSCU, STORESCU = dcmtk_tool("echoscu"), dcmtk_tool("storescu")
needs_dcmtk = pytest.mark.skipif(ECHOSCU is None or STORESCU is None,
                                 reason="DCMTK echoscu/storescu not installed")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def _server(tmp_path: Path, scorer: Scorer, log: QALog, tls: TLSSettings) -> QAServer:
    server = QAServer(Ingestor(scorer, log, source="serve"),
                      ServeConfig(spool_dir=tmp_path / "spool", port=0, tls=tls))
    server.start()
    return server


def _dcmtk(tool: str, server: QAServer, *tls: str, files=()) -> subprocess.CompletedProcess:
    host, port = server.address
    return subprocess.run([tool, *tls, "-aet", "SCANNER", "-aec", "DELTAIQA", host, str(port),
                           *map(str, files)], capture_output=True, text=True, timeout=60,
                          check=False)


@needs_dcmtk
def test_dcmtk_tls_echo_and_store_plain_client_refused(tmp_path: Path, scorer: Scorer,
                                                        certs, capfd) -> None:
    """Item 9: echoscu/storescu +tls work; a plain echoscu on the TLS port is refused and the
    node goes on serving TLS clients afterwards."""
    files = [tmp_path / "in" / f"ct{i}.dcm" for i in range(2)]
    sops = {write_ct(f, seed=i).SOPInstanceUID for i, f in enumerate(files)}
    tls_client = ["+tls", str(certs.client_key), str(certs.client_cert), "+cf", str(certs.ca)]
    with QALog(tmp_path / "qa.sqlite") as log:
        server = _server(tmp_path, scorer, log,
                         TLSSettings(certs.server_cert, certs.server_key, None))
        silent = socket.create_connection(server.address)  # connects, never says a word
        try:
            plain = _dcmtk(ECHOSCU, server)
            assert plain.returncode != 0
            # The silent connection does not hold the listener: TLS clients get through.
            echo = _dcmtk(ECHOSCU, server, *tls_client)
            assert echo.returncode == 0, echo.stdout + echo.stderr
            store = _dcmtk(STORESCU, server, *tls_client, files=files)
            assert store.returncode == 0, store.stdout + store.stderr
            # The client checks the node against a CA that did not sign it: refused.
            wrong = _dcmtk(ECHOSCU, server, "+tls", str(certs.client_key),
                           str(certs.client_cert), "+cf", str(certs.other_ca))
            assert wrong.returncode != 0
        finally:
            silent.close()
            server.stop()
        assert {r.sop_instance_uid for r in log.slices()} == sops
    assert "TLS handshake with 127.0.0.1 failed" in capfd.readouterr().err


@needs_dcmtk
def test_mutual_tls_requires_a_client_certificate_from_the_ca(tmp_path: Path, scorer: Scorer,
                                                              certs) -> None:
    """Item 9: with --tls-ca the sender's certificate is verified (required)."""
    with QALog(tmp_path / "qa.sqlite") as log:
        server = _server(tmp_path, scorer, log,
                         TLSSettings(certs.server_cert, certs.server_key, certs.ca))
        try:
            anonymous = _dcmtk(ECHOSCU, server, "+tla", "+cf", str(certs.ca))
            assert anonymous.returncode != 0
            good = _dcmtk(ECHOSCU, server, "+tls", str(certs.client_key), str(certs.client_cert),
                          "+cf", str(certs.ca))
            assert good.returncode == 0, good.stdout + good.stderr
        finally:
            server.stop()
        # A node trusting only other-ca refuses the same client certificate.
        other = _server(tmp_path / "b", scorer, log,
                        TLSSettings(certs.server_cert, certs.server_key, certs.other_ca))
        try:
            untrusted = _dcmtk(ECHOSCU, other, "+tls", str(certs.client_key),
                               str(certs.client_cert), "+cf", str(certs.ca))
            assert untrusted.returncode != 0
        finally:
            other.stop()


def test_contexts_refuse_old_tls_and_bad_files(tmp_path: Path, certs) -> None:
    """Item 9: TLS 1.2 is the oldest version; bad settings name the file."""
    context = server_context(TLSSettings(certs.server_cert, certs.server_key, certs.ca))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED
    client = client_context(TLSSettings(ca=certs.ca))
    assert client.minimum_version == ssl.TLSVersion.TLSv1_2
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    with pytest.raises(TLSError, match="missing.pem: no such file"):
        server_context(TLSSettings(tmp_path / "missing.pem", certs.server_key))
    with pytest.raises(TLSError, match="cannot load the certificate and key"):
        server_context(TLSSettings(certs.server_cert, certs.client_key))  # key of another cert
    with pytest.raises(TLSError, match="go together"):
        client_context(TLSSettings(cert=certs.client_cert))


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_1_client_refused(tmp_path: Path, scorer: Scorer, certs) -> None:
    """Item 9: a client that offers at most TLS 1.1 gets no association."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(certs.ca))
    try:
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    except ValueError:
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with QALog(tmp_path / "qa.sqlite") as log:
        server = _server(tmp_path, scorer, log,
                         TLSSettings(certs.server_cert, certs.server_key, None))
        try:
            ae = AE(ae_title="SCANNER")
            ae.add_requested_context(Verification)
            ae.connection_timeout = ae.acse_timeout = 10
            assoc = ae.associate(*server.address, ae_title="DELTAIQA",
                                 tls_args=(context, "127.0.0.1"))
            assert not assoc.is_established
            modern = ssl.create_default_context(cafile=str(certs.ca))
            assoc = ae.associate(*server.address, ae_title="DELTAIQA",
                                 tls_args=(modern, "127.0.0.1"))
            assert assoc.is_established
            assert assoc.send_c_echo().Status == 0
            assoc.release()
        finally:
            server.stop()


def tls_scp(certs) -> StorageSCP:
    """A Storage SCP for SRs that speaks only TLS (client certificates required)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certs.server_cert), str(certs.server_key))
    context.load_verify_locations(str(certs.ca))
    context.verify_mode = ssl.CERT_REQUIRED
    return StorageSCP(ssl_context=context)


def _sr():
    from qa_builders import ct_dataset

    from deltaiqa_lite.output.sr import SRModel, build_sr

    class Result:
        def __init__(self, sop, series):
            self.sop_instance_uid, self.series_uid = sop, series
            self.score, self.likert, self.status = 2.5, 2, "ok"

    identity = ct_dataset(seed=9, study_uid="1.2.826.0.1.3680043.8.498.909")
    result = Result(str(identity.SOPInstanceUID), str(identity.SeriesInstanceUID))
    return build_sr([result], identity, SRModel("Delta-IQA", "0.1.0", "int8", "aa" * 32),
                    sop_classes={result.sop_instance_uid: identity.SOPClassUID})


def test_sr_sent_over_tls_and_not_to_an_unverified_destination(tmp_path: Path, certs) -> None:
    """Item 9: SR sending over TLS (client certificate presented, destination verified);
    a destination whose certificate our CA did not sign gets nothing."""
    scp = tls_scp(certs)
    try:
        with QALog(tmp_path / "qa.sqlite") as log:
            sr = _sr()
            wrong = Outbox(tmp_path / "wrong", scp.destination, log, timeout_s=5.0,
                           tls=TLSSettings(certs.client_cert, certs.client_key, certs.other_ca))
            wrong.enqueue(sr, "1.2.3")
            (result,) = wrong.send_due()
            assert not result.ok and scp.received == []
            plain = Outbox(tmp_path / "plain", scp.destination, log, timeout_s=5.0)
            plain.enqueue(sr, "1.2.3")
            assert [r.ok for r in plain.send_due()] == [False]
            right = Outbox(tmp_path / "right", scp.destination, log, timeout_s=5.0,
                           tls=TLSSettings(certs.client_cert, certs.client_key, certs.ca))
            right.enqueue(sr, "1.2.3")
            assert [r.ok for r in right.send_due()] == [True]
        assert [str(d.SOPInstanceUID) for d in scp.received] == [str(sr.SOPInstanceUID)]
    finally:
        scp.stop()


def test_serve_cli_tls_options(tmp_path: Path, tiny_model: Path, certs, capsys) -> None:
    """Item 9: option errors are one line and exit 2, before anything listens."""
    base = ["serve", "--model", str(tiny_model), "--log", str(tmp_path / "qa.sqlite"),
            "--port", "0"]
    assert main(base + ["--tls-ca", str(certs.ca)]) == 2
    assert "--tls-ca/--tls-key need --tls-cert" in capsys.readouterr().err
    assert main(base + ["--tls-cert", str(tmp_path / "nope.pem"), "--tls-key",
                        str(certs.server_key)]) == 2
    assert "nope.pem: no such file" in capsys.readouterr().err


def test_watch_tls_options_need_sr_tls(tmp_path: Path, tiny_model: Path, certs, capsys) -> None:
    """Item 9: watch has no listener; its TLS files are for SR sending only (one line, exit 2)."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    base = ["watch", str(inbox), "--model", str(tiny_model), "--log", str(tmp_path / "qa.sqlite"),
            "--once"]
    assert main(base + ["--tls-ca", str(certs.ca)]) == 2
    assert "need --sr-tls" in capsys.readouterr().err
    assert main(base + ["--sr-tls"]) == 2
    assert "--sr-tls needs --send-sr" in capsys.readouterr().err


@needs_dcmtk
def test_serve_command_tls_end_to_end_with_sr_over_tls(tmp_path: Path, tiny_model: Path,
                                                       certs) -> None:
    """Item 9, the command as deployed: storescu +tls into `serve --tls-*`, and the series SR
    sent back over TLS (`--send-sr ... --sr-tls`) to a TLS-only Storage SCP."""
    from test_serve import ServeProcess

    scp = tls_scp(certs)
    series = "1.2.826.0.1.3680043.8.498.2424"
    files = [tmp_path / "in" / f"ct{i}.dcm" for i in range(2)]
    for i, path in enumerate(files):
        write_ct(path, series_uid=series, instance=i + 1, seed=i,
                 study_uid="1.2.826.0.1.3680043.8.498.2425")
    server = ServeProcess(tmp_path, tiny_model, "--allow", "SCANNER",
                          "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
                          "--tls-ca", str(certs.ca), "--send-sr", str(scp.destination),
                          "--sr-tls", "--series-idle", "1")
    try:
        sent = subprocess.run([STORESCU, "+tls", str(certs.client_key), str(certs.client_cert),
                               "+cf", str(certs.ca), "-aet", "SCANNER", "-aec", "DELTAIQA",
                               server.host, str(server.port), *map(str, files)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert server.wait_logged(2) == {"ok": 2}
        deadline = time.monotonic() + 60
        while not scp.received and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        code, err = server.stop()
        scp.stop()
    assert code == 0, err
    assert "over TLS" in err
    assert [str(d.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
                .SeriesInstanceUID) for d in scp.received] == [series]
