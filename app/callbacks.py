"""Batch-end callbacks: the payload, Standard Webhooks signatures, the refusal of private
targets (SSRF), and one delivery attempt. Retrying is the callback actor's job."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from app.tenancy import DEFAULT_TENANT

if TYPE_CHECKING:
    from pydantic import SecretStr

    from app.store.secrets import SecretStore

#: Addresses never reachable by a callback, whatever else is allowed (cloud metadata services).
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
#: The well-known NAT64 prefix (RFC 6052): its addresses reach the IPv4 address in their low bits.
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
#: Ranges refused besides every address Python's `is_global` calls non-global. Python 3.11's
#: tables predate some entries of the IANA special-purpose registries, and count as global some
#: blocks no webhook receiver lives in (protocol anycast, AS112 sinks, the 6to4 relay). Listed
#: whole, overlaps with `is_global` included, so that the table reads as the policy.
REFUSED_NETWORKS = tuple(ipaddress.ip_network(each) for each in (
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # private
    "100.64.0.0/10",  # carrier-grade NAT (shared address space)
    "127.0.0.0/8", "169.254.0.0/16",  # loopback, link-local
    "192.0.0.0/24",  # IETF protocol assignments (PCP and TURN anycast, DS-Lite, NAT64 discovery)
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",  # documentation
    "192.31.196.0/24", "192.52.193.0/24", "192.175.48.0/24",  # AS112, AMT, AS112 direct delegation
    "192.88.99.0/24",  # the deprecated 6to4 relay anycast
    "198.18.0.0/15",  # benchmarking
    "224.0.0.0/4", "240.0.0.0/4",  # multicast, reserved (255.255.255.255 included)
    "::/8",  # unspecified, loopback, IPv4-compatible and IPv4-mapped (their IPv4 part is checked too)
    "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215)
    "100::/64",  # discard-only
    "2001::/23",  # IETF protocol assignments (Teredo, benchmarking, ORCHID, anycast)
    "2001:db8::/32", "3fff::/20",  # documentation (RFC 3849, RFC 9637)
    "2620:4f:8000::/48",  # AS112 direct delegation
    "5f00::/16",  # SRv6 SIDs
    "fc00::/7", "fe80::/10", "fec0::/10",  # unique-local, link-local, site-local (deprecated)
    "ff00::/8",  # multicast
))
SECRET_PREFIX = "whsec_"
#: Longest error text an attempt records (an exception's message can be long).
ERROR_MAX_CHARS = 300

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Resolves (host, port) to addresses, raising OSError when it cannot; injectable for tests.
Resolver = Callable[[str, int], list[IPAddress]]


class UnsafeCallbackTarget(ValueError):
    """The callback URL points somewhere Batchline refuses to send to."""


class UnresolvableCallbackHost(UnsafeCallbackTarget):
    """The callback URL's host resolves to nothing right now (it may later)."""


@dataclass(frozen=True)
class DeliveryResult:
    sent_us: int
    status_code: int | None
    error: str | None
    #: The IP address the request went to (None when none was reached, or through a proxy).
    address: str | None = None
    duration_ms: int = 0

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def tenant_secret(secrets: SecretStore, tenant: str, *, configured: SecretStr | None) -> str:
    """The secret that signs `tenant`'s callbacks: BATCHLINE_WEBHOOK_SECRET (`configured`) for
    tenant "default" when it is set, else the tenant's own, generated on first use."""
    if tenant == DEFAULT_TENANT and configured is not None:
        return configured.get_secret_value()
    return secrets.webhook_secret(tenant, generate=new_secret)


def shown_url(url: str) -> str:
    """`url` without its user and password, which are credentials (httpx sends them as basic auth)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def sign(secret: str, *, webhook_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` per Standard Webhooks."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX)) if secret.startswith(SECRET_PREFIX) \
        else secret.encode()
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def payload(batch: dict[str, Any]) -> dict[str, Any]:
    return {key: batch[key] for key in ("status", "completed_at", "metadata", "request_counts")} | {
        "job_id": batch["id"]}


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to now (raises OSError or UnicodeError when none)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))


def check_target(url: str, *, allow_private: bool, resolve: Resolver = resolve_host) -> list[IPAddress]:
    """The addresses a callback to `url` may connect to: every address its host resolves to, each
    checked. Raises UnresolvableCallbackHost when the host resolves to nothing, and
    UnsafeCallbackTarget when any address is refused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeCallbackTarget("callback_url must be an absolute http:// or https:// URL")
    addresses = _addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), resolve)
    if not addresses:
        raise UnresolvableCallbackHost(f"callback_url host {parts.hostname!r} does not resolve")
    for address in addresses:
        seen_as = [address, *_embedded_ipv4(address)]
        if any(each in METADATA_ADDRESSES for each in seen_as):
            raise UnsafeCallbackTarget(f"callback_url host {parts.hostname!r} is a cloud metadata address")
        if not allow_private and any(_not_public(each) for each in seen_as):
            raise UnsafeCallbackTarget(
                f"callback_url host {parts.hostname!r} resolves to a private, loopback, link-local or other "
                "non-public address; set BATCHLINE_CALLBACK_ALLOW_PRIVATE=true to allow it")
    return addresses


def _addresses(host: str, port: int, resolve: Resolver) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        return resolve(host, port)
    except (OSError, UnicodeError):
        return []


def _not_public(address: IPAddress) -> bool:
    # is_global alone misses multicast, site-local and some reserved ranges on Python 3.11.
    if not address.is_global or address.is_multicast or address.is_reserved or address.is_unspecified:
        return True
    return any(address.version == network.version and address in network for network in REFUSED_NETWORKS)


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 address an IPv6 one stands for (mapped, NAT64, 6to4, Teredo), which is where a
    connection to it can end up."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in NAT64_PREFIX:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
    return [each for each in found if each is not None]


def _proxied(client: httpx.Client, url: httpx.URL) -> bool:
    """Whether `client` sends requests for `url` through a proxy from the environment (the rules
    httpx applies, read through urllib's public functions)."""
    if not client.trust_env:
        return False
    proxies = urllib.request.getproxies()
    return (url.scheme in proxies or "all" in proxies) and not urllib.request.proxy_bypass(url.host)


def deliver(url: str, body: dict[str, Any], *, webhook_id: str, secret: str, client: httpx.Client,
            allow_private: bool, resolve: Resolver = resolve_host) -> DeliveryResult:
    """One POST of the callback; redirects are not followed (a 3xx counts as a failure).

    The host is resolved once, and the connection goes to an address that was checked (the
    next one only when connecting fails), so DNS cannot answer differently in between. The
    request keeps the URL's Host header, and for https its name for SNI and the certificate.
    `client` must not be shared across hosts: its pool is keyed by address. Through a proxy
    (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY), the proxy resolves and connects: the URL goes as given.
    """
    sent_us = time.time_ns() // 1000
    started = time.monotonic()

    def result(status_code: int | None, error: str | None, address: str | None = None) -> DeliveryResult:
        return DeliveryResult(sent_us, status_code, error and error[:ERROR_MAX_CHARS], address,
                              round((time.monotonic() - started) * 1000))

    try:
        addresses = check_target(url, allow_private=allow_private, resolve=resolve)
    except UnsafeCallbackTarget as exc:
        return result(None, str(exc))
    target = httpx.URL(url)
    data = json.dumps(body, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "host": target.netloc.decode("ascii"),
        "content-type": "application/json",
        "user-agent": "Batchline-Webhooks/1",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id=webhook_id, timestamp=timestamp, body=data),
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    pinned = [target] if _proxied(client, target) else [target.copy_with(host=str(each)) for each in addresses]
    failure: httpx.HTTPError | None = None
    reached: str | None = None
    for each in pinned:
        # through a proxy, the address the proxy reached is unknown here
        address = None if each is target else each.host
        try:
            response = client.post(each, content=data, headers=headers, follow_redirects=False,
                                   extensions=extensions)
        except httpx.ConnectError as exc:
            failure = exc
            continue
        except httpx.HTTPError as exc:
            failure, reached = exc, address
            break
        error = None if 200 <= response.status_code < 300 else \
            f"callback endpoint answered HTTP {response.status_code}"
        return result(response.status_code, error, address)
    return result(None, f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__,
                  reached)
