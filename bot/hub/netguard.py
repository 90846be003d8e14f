"""Which addresses the bot may fetch untrusted URLs from: public ones only.

Image URLs come from the hub's answers (and are stored for `/show`): whoever controls an answer,
or a redirect, must not make the bot fetch from its own network (loopback, private ranges,
link-local cloud metadata, ...). `AddressPolicy` decides per resolved address; `GuardedResolver`
applies it to every name the downloading session resolves (at connect time, so what is checked
is what is connected to), and `check_url` applies it to IP-literal hosts, which aiohttp never
resolves. Redirects are followed one hop at a time by `HubClient.download`, each hop checked.

The only exception is explicit: `host:port` pairs in `ALLOW_PRIVATE_IMAGE_HOSTS` (e.g. the hub
emulator on a private network, or the tests' 127.0.0.1) may be on any address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from bot.hub.errors import DownloadError


class UnsafeAddress(DownloadError):
    """The URL's host is, or resolves to, an address the bot must not fetch from."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="unsafe_address")


class UnsafeAddressOSError(OSError):
    """`UnsafeAddress` as the resolver raises it (aiohttp wraps resolver OSErrors)."""


def is_public(address: str) -> bool:
    """A globally routable unicast address (IPv4-mapped IPv6 judged as its IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def parse_allowed(value: str | None) -> frozenset[tuple[str, int]]:
    """`host:port[,host:port...]` → pairs (hosts lower-cased; IPv6 as `[::1]:8080`)."""
    pairs: set[tuple[str, int]] = set()
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        parts = urlsplit(f"//{item}")
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"{item!r} is not host:port")
        pairs.add((parts.hostname.lower(), parts.port))
    return frozenset(pairs)


class AddressPolicy:
    """Public addresses only, except for the explicitly `allowed` (host, port) pairs."""

    def __init__(self, allowed: Iterable[tuple[str, int]] = ()) -> None:
        self.allowed = frozenset((h.lower(), p) for h, p in allowed)

    def exempt(self, host: str, port: int) -> bool:
        return (host.lower().strip("[]"), port) in self.allowed

    def check_address(self, host: str, port: int, address: str) -> None:
        if not self.exempt(host, port) and not is_public(address):
            raise UnsafeAddress(f"refusing to fetch from {host}: {address} is not a public address")

    def check_url(self, url: str) -> None:
        """Refuse a URL whose host is a non-public IP literal (names are checked when resolved)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            if not host:
                raise UnsafeAddress("refusing a URL without a host") from None
            return
        self.check_address(host, port, host)


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default, then refuses the host if any address is not public."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            try:
                self.policy.check_address(host, port, result["host"])
            except UnsafeAddress as exc:
                raise UnsafeAddressOSError(str(exc)) from None
        return results

    async def close(self) -> None:
        await self._inner.close()
