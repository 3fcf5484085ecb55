"""Where a webhook may be sent: no server-side request forgery through a subscriber's URL. Pure.

A webhook URL is chosen by whoever holds the control token, and the post-call service
sends to it from inside the deployment. Without care that is a way to reach the
deployment's own network: NATS' monitoring port, a cloud metadata service at
169.254.169.254, an admin UI on loopback. So a URL must be `https://` and its host must
resolve only to public addresses; both are relaxed only by
`SWITCHBOARD_WEBHOOKS_ALLOW_PRIVATE=1` (development: `switchboard dev`, tests).

The address check runs twice: on the URL when it is subscribed (an IP literal or an
obviously local name is refused at once) and on every address the name resolves to at
connection time (`services/postcall/transport.py`), where the checked address is the one
connected to, so DNS rebinding cannot slip a private address in between.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class UnsafeUrl(ValueError):
    """A webhook URL refused, with a reason safe to show the caller."""


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast address (not private, loopback, link-local,
    multicast, reserved, unspecified, shared CGNAT, or an IPv4 address mapped into IPv6)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return is_public_address(str(mapped))
        if ip.teredo is not None:
            return False
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL, normalised, if webhooks may go there; `UnsafeUrl` with the reason if not."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl("url too long")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise UnsafeUrl("not a valid url") from error
    if parts.scheme not in ("https", "http"):
        raise UnsafeUrl("url must be https://")
    if parts.scheme == "http" and not allow_private:
        raise UnsafeUrl(
            "url must be https:// (http:// only with SWITCHBOARD_WEBHOOKS_ALLOW_PRIVATE=1)"
        )
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("credentials in the url are not allowed; use the signature")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeUrl("url has no host")
    if port == 0:
        raise UnsafeUrl("url has no valid port")
    if parts.fragment:
        raise UnsafeUrl("url may not have a fragment")
    if not allow_private:
        if _is_ip_literal(host) and not is_public_address(host):
            raise UnsafeUrl("private, loopback and link-local addresses are not allowed")
        if host.lower() in _LOCAL_NAMES or host.lower().endswith((".localhost", ".local")):
            raise UnsafeUrl("local host names are not allowed")
    return parts.geturl()


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True
