"""`synth-ai proxy` against upstreams that misbehave at the HTTP level: silent past --timeout,
a long response head, a body cut off mid-way, a connection closed after each answer. Each
upstream is a raw socket server in this process on 127.0.0.1, answering bytes chosen here."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from helpers.proxy import running_proxy

KEY = "sk-test-proxy-upstream-0123456789"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ANSWER = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "raw answer"}, "finish_reason": "stop"}]}).encode()


def _read_request(conn: socket.socket) -> bytes:
    """One request (head and a Content-Length body), or b"" when the client closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@contextmanager
def raw_upstream(handle: Callable[[socket.socket, int], None]) -> Iterator[str]:
    """A server on 127.0.0.1 calling `handle(connection, n)` for its n-th connection (0, 1, ...)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def serve() -> None:
        n = 0
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conns.append(conn)
            threading.Thread(target=handle, args=(conn, n), daemon=True).start()
            n += 1

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        server.close()
        for conn in conns:
            conn.close()


def _records(db) -> list[dict]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT call_records FROM events WHERE event_type = 'cais' ORDER BY id").fetchall()
    return [r for (records,) in rows for r in json.loads(records)]


def _post(url: str, **kw) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=30, **kw)


def test_an_upstream_silent_past_the_timeout_is_a_504_recorded_as_a_failed_call(tmp_path):
    released = threading.Event()

    def silent(conn: socket.socket, n: int) -> None:
        _read_request(conn)
        released.wait(20)  # says nothing

    db = tmp_path / "t.db"
    with raw_upstream(silent) as url, running_proxy(tmp_path, url, db, "--timeout", "1") as px:
        try:
            r = _post(px.url)
        finally:
            released.set()
        assert r.status_code == 504, r.text
        assert "upstream timed out" in r.json()["error"]["message"]
        assert px.stop() == 0
    (record,) = _records(db)
    assert record["outcome"] == "error" and record["error"]["status_code"] == 504
    assert record["error"]["type"] == "upstream_unreachable"


def test_a_long_response_head_and_a_closing_upstream_pass_through(tmp_path):
    """A 20 KB header (more than an HTTP client's usual 8 KB line limit) and `Connection: close`
    after every answer (each call needs a fresh upstream connection)."""
    long_value = b"v" * 20_000

    def closing(conn: socket.socket, n: int) -> None:
        if _read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"X-Long: " + long_value + b"\r\nX-Conn: " + str(n).encode() + b"\r\n"
                         b"Content-Length: " + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER)
        conn.close()

    db = tmp_path / "t.db"
    with raw_upstream(closing) as url, running_proxy(tmp_path, url, db) as px:
        with httpx.Client() as client:
            answers = [_post(px.url) if i == 0 else client.post(
                px.url + "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {KEY}"})
                for i in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        assert all(a.content == ANSWER and a.headers["x-long"] == long_value.decode() for a in answers)
        assert sorted(a.headers["x-conn"] for a in answers) == ["0", "1", "2"]  # a new connection each time
        assert px.stop() == 0
    records = _records(db)
    assert [r["outcome"] for r in records] == ["success"] * 3
    assert records[0]["output_messages"][0]["parts"][0]["text"] == "raw answer"


def test_an_upstream_that_breaks_off_mid_body_ends_the_clients_answer_early(tmp_path):
    def cut(conn: socket.socket, n: int) -> None:
        if _read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER[:20])
        conn.close()

    db = tmp_path / "t.db"
    with raw_upstream(cut) as url, running_proxy(tmp_path, url, db) as px:
        with pytest.raises(httpx.RemoteProtocolError):  # the client sees its answer end early
            _post(px.url)
        status = px.wait_idle()
        # the 20 bytes that came are no Chat Completions answer: counted, not recorded as a success
        assert status["calls"]["seen"] == 1 and status["calls"]["unrecordable"] == 1
        assert px.stop() == 0
    assert _records(db) == []


def _self_signed(tmp_path):
    import datetime
    import ipaddress

    crypto = pytest.importorskip("cryptography")  # noqa: F841 - the test extra
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_an_https_upstream_whose_certificate_is_not_trusted_is_refused(tmp_path):
    """TLS to the upstream is verified (against the CA bundle): a self-signed upstream is a 502,
    and the request (with its key) never reaches it."""
    import ssl

    cert_path, key_path = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    reached: list[bytes] = []

    def tls(conn: socket.socket, n: int) -> None:
        try:
            with context.wrap_socket(conn, server_side=True) as wrapped:
                reached.append(_read_request(wrapped))
        except (ssl.SSLError, OSError):
            pass  # the proxy refused the certificate during the handshake

    db = tmp_path / "t.db"
    with raw_upstream(tls) as url, running_proxy(tmp_path, url.replace("http://", "https://"), db) as px:
        r = _post(px.url)
        assert r.status_code == 502, r.text
        assert "upstream unreachable" in r.json()["error"]["message"]
        assert "certificate" in r.json()["error"]["message"].lower()
        assert px.stop() == 0
    assert not [req for req in reached if req]
    (record,) = _records(db)
    assert record["outcome"] == "error" and record["error"]["status_code"] == 502
