"""``S2T_REDIS_URL`` parsing: the Sentinel form, bad URLs refused when settings load with a
message that names the setting (and never shows a password), and the clients built from
it. Pure logic: nothing here connects."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.config import Settings, mask_url_password
from shared.redis_keys import async_client, sync_client
from shared.redis_url import RedisUrlError, SentinelUrl, is_sentinel_url, parse_sentinel_url
from whisper_appliance.supervisor import Supervisor


def test_full_sentinel_url() -> None:
    url = "redis+sentinel://app:p%40ss@s1:26380,s2,10.0.0.3:5000/mymaster/2?sentinel_password=sp"
    assert parse_sentinel_url(url) == SentinelUrl(
        sentinels=(("s1", 26380), ("s2", 26379), ("10.0.0.3", 5000)),
        service_name="mymaster",
        db=2,
        username="app",
        password="p@ss",
        sentinel_password="sp",
    )


def test_minimal_sentinel_url() -> None:
    parsed = parse_sentinel_url("redis+sentinel://127.0.0.1/s2t")
    assert parsed == SentinelUrl(sentinels=(("127.0.0.1", 26379),), service_name="s2t")
    assert parse_sentinel_url("REDIS+SENTINEL://:pw@h/s/").password == "pw"
    assert is_sentinel_url("redis+sentinel://h/s") and not is_sentinel_url("redis://h:6379/0")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://h1,h2", "names no Sentinel service"),
        ("redis+sentinel://h1/", "names no Sentinel service"),
        ("redis+sentinel://h1/master/zero", "database must be a number"),
        ("redis+sentinel://h1/master/0/extra", "more than /service_name/db"),
        ("redis+sentinel://h1:port/master", "bad Sentinel port 'port'"),
        ("redis+sentinel://h1:70000/master", "bad Sentinel port '70000'"),
        ("redis+sentinel://h1,,h2/master", "empty Sentinel host"),
        ("redis+sentinel://h1/master?socket_timeout=1", "unknown option(s) socket_timeout"),
        ("sentinel://h1/master", "must start with redis://"),
        ("127.0.0.1:6379", "got no scheme"),
    ],
)
def test_bad_url_is_a_clear_config_error(url: str, says: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(redis_url=url)
    assert "S2T_REDIS_URL" in str(raised.value) and says in str(raised.value)


def test_config_error_does_not_show_the_password() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(redis_url="redis+sentinel://:hunter2@h1:x/master")
    assert "hunter2" not in str(raised.value)


def test_parser_refuses_a_plain_url() -> None:
    with pytest.raises(RedisUrlError):
        parse_sentinel_url("redis://h/0")


def test_plain_urls_still_pass() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://:pw@h:6380/1", "unix:///run/redis.sock?db=1"):
        assert Settings(redis_url=url).redis_url == url


def test_masked_sentinel_url_hides_both_passwords() -> None:
    url = "redis+sentinel://u:pw@h1,h2:1/m/0?sentinel_password=s3cr3t"
    assert mask_url_password(url) == "redis+sentinel://u:***@h1,h2:1/m/0?sentinel_password=***"
    assert "s3cr3t" not in str(Settings(redis_url=url).masked())


def test_sentinel_client_takes_the_primary_through_sentinel() -> None:
    settings = Settings(redis_url="redis+sentinel://:urlpw@s1:1,s2:2/mymaster/3?sentinel_password=sp")
    client = sync_client(settings, socket_timeout=1.0)
    pool = client.connection_pool
    assert pool.service_name == "mymaster" and pool.is_master  # type: ignore[attr-defined]
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (3, "urlpw", 1.0)
    assert kwargs["health_check_interval"] == 30  # as for a plain URL
    manager = pool.sentinel_manager  # type: ignore[attr-defined]
    # The daemons get their own password and the caller's timeouts, never the primary's password.
    assert manager.sentinel_kwargs == {"socket_timeout": 1.0, "socket_connect_timeout": 2.0, "password": "sp"}
    addresses = [s.connection_pool.connection_kwargs for s in manager.sentinels]
    assert [(a["host"], a["port"]) for a in addresses] == [("s1", 1), ("s2", 2)]


def test_sentinel_daemons_get_short_timeouts_by_default() -> None:
    """They are asked in turn: one that does not answer must not stall the next."""
    client = sync_client(Settings(redis_url="redis+sentinel://s1,s2/m"))
    manager = client.connection_pool.sentinel_manager  # type: ignore[attr-defined]
    assert manager.sentinel_kwargs == {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
    assert "socket_timeout" not in client.connection_pool.connection_kwargs  # the primary: as today


def test_redis_password_setting_wins_over_the_url_for_sentinel_too() -> None:
    settings = Settings(redis_url="redis+sentinel://:urlpw@s1/m", redis_password="setting")
    assert sync_client(settings).connection_pool.connection_kwargs["password"] == "setting"
    client = async_client(settings)
    assert client.connection_pool.connection_kwargs["password"] == "setting"
    assert client.connection_pool.service_name == "m"  # type: ignore[attr-defined]


def test_up_never_embeds_a_redis_for_a_sentinel_url(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "redis+sentinel://127.0.0.1:1/s2t"
    supervisor = Supervisor(Settings(redis_url=url), workers=1, port=0, host="127.0.0.1", model="tiny.en")
    monkeypatch.setattr(Supervisor, "_launch", lambda self, child: None)
    monkeypatch.setattr(Supervisor, "_answers", lambda self: False)  # no primary answers yet
    supervisor.start()
    assert [c.name for c in supervisor.children] == ["audio", "worker-0", "gateway"]
    assert supervisor.settings.redis_url == url
    assert all(c.env["S2T_REDIS_URL"] == url for c in supervisor.children)


def test_up_embeds_when_a_plain_url_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The counterpart, so that the test above would see an embedded Redis if there were one."""
    supervisor = Supervisor(
        Settings(redis_url="redis://127.0.0.1:1/0"), workers=1, port=0, host="127.0.0.1", model="tiny.en"
    )
    monkeypatch.setattr(Supervisor, "_launch", lambda self, child: None)
    monkeypatch.setattr(Supervisor, "_answers", lambda self: False)
    supervisor.start()
    assert supervisor.children[0].name == "redis"
