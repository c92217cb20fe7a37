"""Fetch an image named by URL without letting a client point the service at what it must not reach.

Off unless RESNET_URL_INPUTS is set. Every URL, and every redirect's target, is vetted before anything connects:
http or https only; its host on RESNET_URL_ALLOWED_HOSTS when that is set; and every address the name resolves to
public, unless the host or address is allowed explicitly. The connection then goes to the address that was
vetted, with the name in the Host header and in TLS's SNI (and certificate check), so a name that resolves
elsewhere a moment later (DNS rebinding) changes nothing. The body is capped at RESNET_MAX_UPLOAD_BYTES as it
streams in, and the whole fetch, redirects included, at RESNET_URL_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from resnet_service.core.errors import PayloadTooLarge, UrlFetchFailed, UrlNotAllowed

__all__ = ["UrlPolicy", "fetch_image"]

MAX_REDIRECTS = 3
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class UrlPolicy:
    """Which URLs may be fetched: built from the settings' allow-list."""

    enabled: bool
    names: frozenset[str]
    suffixes: tuple[str, ...]
    networks: tuple[Network, ...]
    timeout_s: float
    max_bytes: int

    @classmethod
    def from_entries(cls, enabled: bool, entries: Iterable[str], timeout_s: float, max_bytes: int) -> UrlPolicy:
        names, suffixes, networks = set(), [], []
        for entry in (entry.strip().lower() for entry in entries):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*."):
                suffixes.append(entry[1:])
            else:
                names.add(entry.rstrip("."))
        return cls(enabled, frozenset(names), tuple(suffixes), tuple(networks), timeout_s, max_bytes)

    @property
    def restricted(self) -> bool:
        return bool(self.names or self.suffixes or self.networks)

    def host_allowed(self, host: str) -> bool:
        if not self.restricted:
            return True
        if host in self.names or any(host.endswith(suffix) for suffix in self.suffixes):
            return True
        address = _literal_address(host)
        return address is not None and any(address in network for network in self.networks)

    def address_allowed(self, host: str, address: Address) -> bool:
        # A public address is fine for any allowed host; any other needs its host named or its network listed.
        if address.is_global:
            return True
        return host in self.names or any(address in network for network in self.networks)


def _unmapped(address: Address) -> Address:
    # An IPv4-mapped IPv6 address (::ffff:127.0.0.1) is judged as the IPv4 address it carries.
    return getattr(address, "ipv4_mapped", None) or address


def _literal_address(host: str) -> Address | None:
    try:
        return _unmapped(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


async def _vetted(url: httpx.URL, policy: UrlPolicy) -> Address:
    """The address to connect to for ``url``, or ``UrlNotAllowed`` saying why not."""
    if url.scheme not in ("http", "https"):
        raise UrlNotAllowed(f"image URLs must be http or https, not {url.scheme or 'schemeless'}")
    host = url.host.lower().rstrip(".")
    if not host:
        raise UrlNotAllowed("the image URL has no host")
    if not policy.host_allowed(host):
        raise UrlNotAllowed(f"{host} is not on RESNET_URL_ALLOWED_HOSTS")
    literal = _literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise UrlFetchFailed(f"{host} could not be resolved ({exc})") from exc
        addresses = [_unmapped(ipaddress.ip_address(info[4][0])) for info in found]
    # Every address must pass, not just the first: the name may resolve to a mix.
    for address in addresses:
        if not policy.address_allowed(host, address):
            raise UrlNotAllowed(
                f"{host} resolves to {address}, a private, loopback or link-local address; allow it explicitly "
                "in RESNET_URL_ALLOWED_HOSTS to fetch from it"
            )
    return addresses[0]


async def _get(client: httpx.AsyncClient, url: httpx.URL, address: Address, max_bytes: int) -> httpx.Response | bytes:
    """One request to the vetted address: the image bytes, or the redirect response to follow."""
    pinned = url.copy_with(host=str(address))
    headers = {"Host": url.netloc.decode("ascii"), "Accept": "image/*"}
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    request = client.build_request("GET", pinned, headers=headers, extensions=extensions)
    response = await client.send(request, stream=True)
    try:
        if response.is_redirect:
            return response
        if response.status_code != 200:
            raise UrlFetchFailed(f"{url} answered {response.status_code}")
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise PayloadTooLarge(f"the image at {url} is {declared} bytes; the limit is {max_bytes}")
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > max_bytes:
                raise PayloadTooLarge(f"the image at {url} is over the {max_bytes}-byte limit")
        return bytes(data)
    finally:
        await response.aclose()


async def fetch_image(raw_url: str, policy: UrlPolicy) -> bytes:
    """The bytes at ``raw_url``, following at most MAX_REDIRECTS redirects, each vetted like the first."""
    if not policy.enabled:
        raise UrlNotAllowed("image URLs are not accepted here (RESNET_URL_INPUTS is off): send the image itself")
    try:
        url = httpx.URL(raw_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UrlNotAllowed(f"not a usable URL: {exc}") from exc
    try:
        client = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        async with asyncio.timeout(policy.timeout_s), client:
            for _ in range(MAX_REDIRECTS + 1):
                address = await _vetted(url, policy)
                result = await _get(client, url, address, policy.max_bytes)
                if isinstance(result, bytes):
                    return result
                url = httpx.URL(urljoin(str(url), result.headers["location"]))
    except TimeoutError as exc:
        raise UrlFetchFailed(f"fetching {url} took over {policy.timeout_s:g} s") from exc
    except httpx.HTTPError as exc:
        raise UrlFetchFailed(f"fetching {url} failed: {exc}") from exc
    raise UrlFetchFailed(f"{raw_url} redirected more than {MAX_REDIRECTS} times")
