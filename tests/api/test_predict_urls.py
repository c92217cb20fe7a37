"""JSON {"url": ...} on /predict, against a local HTTP server: off by default, and never a way into the network.

The server runs on loopback, which the service refuses unless it is allowed explicitly; that is what most of
these tests check, from both sides (the service's answer, and what the server saw).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from resnet_service import Settings, create_app
from resnet_service.web.url_fetch import UrlPolicy
from tests.support.errors import assert_error
from tests.support.images import encode, photo

JPEG = encode(photo("chelsea"), "JPEG")


class _ImageServer(ThreadingHTTPServer):
    seen: list[tuple[str, str]]


class _Handler(BaseHTTPRequestHandler):
    server: _ImageServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.seen.append((self.path, self.headers.get("Host", "")))
        port = self.server.server_address[1]
        routes = {
            "/redirect-local": f"http://127.0.0.1:{port}/dog.jpg",
            "/redirect-metadata": "http://169.254.169.254/latest/meta-data/",
            "/redirect-private": "http://10.0.0.1/dog.jpg",
            "/redirect-loop": "/redirect-loop",
        }
        if self.path in routes:
            self.send_response(302)
            self.send_header("Location", routes[self.path])
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(2)
        if self.path == "/missing":
            self.send_error(404)
            return
        body = JPEG * 4 if self.path.startswith("/big") else JPEG
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        if self.path != "/big-unannounced":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def image_server() -> Iterator[_ImageServer]:
    server = _ImageServer(("127.0.0.1", 0), _Handler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _client(settings: Settings, **update: object) -> TestClient:
    return TestClient(create_app(settings.model_copy(update=update)))


def _url(server: _ImageServer, path: str, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{server.server_address[1]}{path}"


def test_urls_are_refused_unless_turned_on_and_nothing_is_fetched(
    settings: Settings, image_server: _ImageServer
) -> None:
    image_server.seen.clear()
    with _client(settings) as client:
        response = client.post("/predict", json={"url": _url(image_server, "/dog.jpg")})
    assert_error(response, 403, "url_not_allowed")
    assert "RESNET_URL_INPUTS is off" in response.json()["error"]["message"]
    assert image_server.seen == []


def test_loopback_is_refused_unless_allowed_explicitly(settings: Settings, image_server: _ImageServer) -> None:
    image_server.seen.clear()
    with _client(settings, url_inputs=True) as client:
        for host in ("127.0.0.1", "localhost"):
            response = client.post("/predict", json={"url": _url(image_server, "/dog.jpg", host)})
            assert_error(response, 403, "url_not_allowed")
            assert "private, loopback or link-local" in response.json()["error"]["message"]
    assert image_server.seen == []


def test_an_allowed_url_answers_what_the_upload_answers(settings: Settings, image_server: _ImageServer) -> None:
    image_server.seen.clear()
    with _client(settings, url_inputs=True, url_allowed_hosts=frozenset({"localhost"})) as client:
        fetched = client.post("/predict", json={"url": _url(image_server, "/dog.jpg", "localhost")})
        uploaded = client.post("/predict", files={"image": ("dog.jpg", JPEG)})
    assert fetched.status_code == 200, fetched.text
    assert fetched.content == uploaded.content
    # The connection went to the address the service checked, under the name the client gave.
    assert image_server.seen == [("/dog.jpg", f"localhost:{image_server.server_address[1]}")]


def test_a_redirect_is_vetted_like_the_first_url(settings: Settings, image_server: _ImageServer) -> None:
    with _client(settings, url_inputs=True, url_allowed_hosts=frozenset({"127.0.0.1"})) as client:
        assert client.post("/predict", json={"url": _url(image_server, "/redirect-local")}).status_code == 200
        for path in ("/redirect-metadata", "/redirect-private"):
            # Refused before any connection: a connection to either address would fail as a 502, not a 403.
            assert_error(client.post("/predict", json={"url": _url(image_server, path)}), 403, "url_not_allowed")
        looping = client.post("/predict", json={"url": _url(image_server, "/redirect-loop")})
        assert_error(looping, 502, "url_fetch_failed")
        assert "redirected more than 3 times" in looping.json()["error"]["message"]


def test_size_time_status_and_scheme_are_capped(settings: Settings, image_server: _ImageServer) -> None:
    allowed = frozenset({"127.0.0.1"})
    with _client(
        settings, url_inputs=True, url_allowed_hosts=allowed, max_upload_bytes=len(JPEG) + 10, url_timeout_s=0.5
    ) as client:
        for path in ("/big", "/big-unannounced"):
            assert_error(client.post("/predict", json={"url": _url(image_server, path)}), 413, "payload_too_large")
        slow = client.post("/predict", json={"url": _url(image_server, "/slow")})
        assert_error(slow, 502, "url_fetch_failed")
        assert "took over 0.5 s" in slow.json()["error"]["message"]
        assert_error(client.post("/predict", json={"url": _url(image_server, "/missing")}), 502, "url_fetch_failed")
        for url in ("file:///etc/passwd", "ftp://127.0.0.1/dog.jpg", "not a url"):
            assert_error(client.post("/predict", json={"url": url}), 403, "url_not_allowed")


def test_a_host_off_the_allow_list_is_refused(settings: Settings, image_server: _ImageServer) -> None:
    with _client(settings, url_inputs=True, url_allowed_hosts=frozenset({"images.example.com"})) as client:
        response = client.post("/predict", json={"url": _url(image_server, "/dog.jpg")})
    assert_error(response, 403, "url_not_allowed")
    assert "not on RESNET_URL_ALLOWED_HOSTS" in response.json()["error"]["message"]


def test_the_allow_list_takes_names_subdomains_and_networks() -> None:
    import ipaddress

    policy = UrlPolicy.from_entries(True, ["images.example.com", "*.cdn.example.net", "10.1.0.0/16"], 5.0, 1)
    assert policy.host_allowed("images.example.com") and policy.host_allowed("eu.cdn.example.net")
    assert not policy.host_allowed("example.com") and not policy.host_allowed("cdn.example.net.evil.org")
    assert policy.host_allowed("10.1.2.3") and not policy.host_allowed("10.2.0.1")
    private, public = ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("93.184.216.34")
    assert policy.address_allowed("eu.cdn.example.net", public)
    # Named only by a wildcard, a host may not resolve to a private address; inside an allowed network it may.
    assert not policy.address_allowed("eu.cdn.example.net", ipaddress.ip_address("192.168.0.1"))
    assert policy.address_allowed("eu.cdn.example.net", private)
    assert policy.address_allowed("images.example.com", ipaddress.ip_address("192.168.0.1"))
    open_policy = UrlPolicy.from_entries(True, [], 5.0, 1)
    assert open_policy.host_allowed("anything.example") and not open_policy.address_allowed(
        "anything.example", ipaddress.ip_address("169.254.169.254")
    )
