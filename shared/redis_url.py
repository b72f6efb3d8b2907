"""``S2T_REDIS_URL``: a plain Redis, or a primary found through Redis Sentinel.

redis-py parses ``redis://``, ``rediss://`` and ``unix://`` itself (``Redis.from_url``) and
follows a Sentinel failover (``redis.sentinel.Sentinel.master_for``), but has no URL form
for a Sentinel deployment. This module adds the one other projects converged on
(Redis-Sentinel-Url, Prefect, docket; Kombu's differs only in separators)::

    redis+sentinel://[[username]:password@]host[:port][,host[:port]...]/service_name[/db][?sentinel_password=...]

Sentinel members default to port 26379. The user info authenticates to the Redis
primary and replicas (``S2T_REDIS_PASSWORD`` still wins over it); the daemons themselves
take ``sentinel_username``/``sentinel_password`` (Sentinel's own ``requirepass``). A URL
is checked once, when settings load, so a typo stops a service at start with a message
that names the setting rather than at its first Redis command.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_DEFAULT_PORT = 26379
PLAIN_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_OPTIONS = frozenset({"sentinel_username", "sentinel_password"})

FORM = "redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service_name[/db]"


class RedisUrlError(ValueError):
    """An S2T_REDIS_URL that no client could connect with."""


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None


def scheme_of(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def is_sentinel_url(url: str) -> bool:
    return scheme_of(url) == SENTINEL_SCHEME


def validate_redis_url(url: str) -> str:
    """The URL unchanged when a client can be made from it; else :class:`RedisUrlError`."""
    scheme = scheme_of(url)
    if scheme == SENTINEL_SCHEME:
        parse_sentinel_url(url)
    elif scheme not in PLAIN_SCHEMES:
        raise RedisUrlError(
            f"S2T_REDIS_URL must start with redis://, rediss://, unix:// or {SENTINEL_SCHEME}:// "
            f"(got {scheme + '://' if scheme else 'no scheme'})"
        )
    return url


def parse_sentinel_url(url: str) -> SentinelUrl:
    if not is_sentinel_url(url):
        raise RedisUrlError(f"not a {SENTINEL_SCHEME}:// URL")
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", parts.netloc
    username, _, password = userinfo.partition(":")  # a lone user info is a user name, as in redis://
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise RedisUrlError(f"S2T_REDIS_URL names no Sentinel service (the primary's name); form: {FORM}")
    if len(path) > 2:
        raise RedisUrlError(f"S2T_REDIS_URL has more than /service_name/db after the hosts; form: {FORM}")
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise RedisUrlError(f"S2T_REDIS_URL: the database must be a number, got {path[1]!r}")
        db = int(path[1])
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(options) - SENTINEL_OPTIONS
    if unknown:
        raise RedisUrlError(
            f"S2T_REDIS_URL: unknown option(s) {', '.join(sorted(unknown))}; "
            f"a Sentinel URL takes {', '.join(sorted(SENTINEL_OPTIONS))}"
        )
    return SentinelUrl(
        sentinels=_sentinels(hosts),
        service_name=unquote(path[0]),
        db=db,
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
    )


def _sentinels(hosts: str) -> tuple[tuple[str, int], ...]:
    found: list[tuple[str, int]] = []
    for member in hosts.split(","):
        host, colon, port = member.strip().rpartition(":") if ":" in member else (member.strip(), "", "")
        if not host:
            raise RedisUrlError(f"S2T_REDIS_URL: empty Sentinel host in {hosts!r}; form: {FORM}")
        if colon and not (port.isdigit() and 0 < int(port) < 65536):
            raise RedisUrlError(f"S2T_REDIS_URL: bad Sentinel port {port!r} in {member!r}")
        found.append((host, int(port) if colon else SENTINEL_DEFAULT_PORT))
    return tuple(found)
