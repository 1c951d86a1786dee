"""FFmpeg's `whip` muxer (FFmpeg 8.1 bundled by PyAV) publishing to our WHIP endpoint.

Interop finding, measured here (captured DTLS flight, see the report): FFmpeg offers
`a=setup:passive` (it is the DTLS server) and its GnuTLS backend generates a self-signed ECDSA
certificate on curve **P-224** (secp224r1): libavformat/tls_gnutls.c asks for
`gnutls_sec_param_to_pk_bits(GNUTLS_PK_ECDSA, GNUTLS_SEC_PARAM_MEDIUM)` bits, i.e. 224. aiortc's DTLS runs on the OpenSSL 4.0 bundled with
`cryptography`, where the deprecated RFC 8422 curves (P-224 among them) are no TLS groups any more.
In TLS 1.2 OpenSSL requires the peer certificate's curve to be one of its own supported groups, so
after ServerKeyExchange aiortc sends a fatal `illegal_parameter` alert (FFmpeg logs "A TLS fatal
alert has been received"). Nothing on the server side can add P-224 back (the group is compiled
out: `SSL_CTX_set1_curves_list("secp224r1")` fails), and with `whip_flags=dtls_active` the same
check refuses FFmpeg's P-224 *client* certificate. The working recipe: give the muxer a P-256
certificate with its `cert_file`/`key_file` options (documented in the README).
"""

from __future__ import annotations

import asyncio
import datetime
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL
from OpenSSL._util import lib as openssl_lib

from tests.conftest import make_settings
from tests.media_helpers import join, start_session, wait_stream_status
from tests.whip_helpers import WHEP, WHIP, whep_play


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path / "data", record=True)


def p256_certificate(directory: Path) -> tuple[str, str]:
    """A self-signed ECDSA P-256 certificate and key (PEM) for the muxer's DTLS server."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ffmpeg-whip")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


async def run_ffmpeg(
    url: str, token: str, seconds: float, *cert: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.ffmpeg_whip_publisher",
        url,
        token,
        str(seconds),
        *cert,
        cwd=str(Path(__file__).resolve().parent.parent),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_ffmpeg_whip_muxer_publishes_and_an_aiortc_whep_viewer_gets_frames(
    server, api, tmp_path
):
    started = await start_session(api, ("camera",))
    sid, token = started["session"]["id"], started["broadcaster_token"]
    stream_id = started["session"]["streams"][0]["id"]
    proc = await run_ffmpeg(
        f"{server.base_url}{WHIP}/{sid}/camera", token, 8, *p256_certificate(tmp_path)
    )
    try:
        await wait_stream_status(server.services.store, stream_id, "live", timeout=15)
        viewer_token = (await join(api, sid))["viewer_token"]
        viewer, resp = await whep_play(api, viewer_token, f"{WHEP}/{sid}/camera", audio=True)
        assert resp.status == 201, resp.body
        await viewer.wait_frames(10, timeout=15)
        frame = viewer.frames[-1].to_ndarray(format="rgb24")
        assert frame[:, :, 0].mean() > 150 and frame[:, :, 2].mean() < 80  # FFmpeg's red
        deadline = time.monotonic() + 10
        while viewer.audio_frames < 10:
            assert time.monotonic() < deadline, "no audio from FFmpeg's Opus track"
            await asyncio.sleep(0.05)
        await viewer.close()
    finally:
        out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    # FFmpeg's close sends the WHIP DELETE: the stream stops and its recording is finished.
    await wait_stream_status(server.services.store, stream_id, "stopped", timeout=10)
    recordings = await server.services.store.find("recordings")
    assert recordings and recordings[0]["stream_id"] == stream_id


async def test_ffmpeg_default_p224_certificate_is_refused_by_aiortc_openssl(server, api):
    """Pins the diagnosis above: if aiortc or its OpenSSL ever accept P-224 again, this fails and
    the README's `cert_file`/`key_file` advice can go."""
    ctx = SSL.Context(SSL.DTLS_METHOD)
    assert openssl_lib.SSL_CTX_set1_curves_list(ctx._context, b"secp224r1") == 0
    started = await start_session(api, ("camera",))
    sid, token = started["session"]["id"], started["broadcaster_token"]
    stream_id = started["session"]["streams"][0]["id"]
    proc = await run_ffmpeg(f"{server.base_url}{WHIP}/{sid}/camera", token, 3)
    out, _ = await proc.communicate()
    log = out.decode(errors="replace")
    assert proc.returncode != 0
    assert "A TLS fatal alert has been received" in log, log[-2000:]
    assert "DTLS session failed" in log
    await wait_stream_status(server.services.store, stream_id, "failed", timeout=10)
