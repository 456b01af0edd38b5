"""`ci.access`: the login rule and the order in which the registry access is made."""

import pytest

from ci.access import RegistryAccess, registry_access
from ci.build import push as _push
from ci.errors import BrokkrError
from ci.inputs import LOGIN_RULE, check_login
from ci.rules.reference import parse_reference


class FakeSecret:
    def __init__(self, value: str) -> None:
        self.value = value
        self.reads = 0

    async def plaintext(self) -> str:
        self.reads += 1
        return self.value


class NoService:
    """A --registry-service that must never be started."""

    async def start(self) -> None:
        raise AssertionError("started")


@pytest.mark.parametrize(("username", "password"), [("bot", None), ("", FakeSecret("t"))])
def test_a_login_by_halves_is_one_rule_with_one_message(username, password):
    with pytest.raises(BrokkrError) as caught:
        check_login(username, password)
    assert str(caught.value) == LOGIN_RULE
    with pytest.raises(BrokkrError) as caught:
        _push.with_auth(None, parse_reference("ghcr.io/o/n"), username=username, password=password)  # type: ignore[arg-type]
    assert str(caught.value) == LOGIN_RULE


async def test_a_service_for_a_remote_registry_fails_before_the_secret_is_read():
    secret = FakeSecret("token")
    with pytest.raises(BrokkrError, match="--registry-service needs a loopback registry"):
        await registry_access(
            parse_reference("ghcr.io/o/n:1"),
            "bot",
            secret,  # type: ignore[arg-type]
            NoService(),  # type: ignore[arg-type]
        )
    assert secret.reads == 0


async def test_access_holds_the_login_both_ways_and_no_route_without_a_service():
    secret = FakeSecret("token")
    access = await registry_access(parse_reference("ghcr.io/o/n:1"), "bot", secret, None)  # type: ignore[arg-type]
    assert access.username == "bot"
    assert access.password is secret
    assert access.credentials is not None
    assert access.credentials.password == "token"
    assert access.connect_to == {}
    assert "token" not in repr(access)


async def test_an_empty_password_secret_is_refused():
    with pytest.raises(BrokkrError, match="secret for 'bot' is empty"):
        await registry_access(parse_reference("ghcr.io/o/n:1"), "bot", FakeSecret(""), None)  # type: ignore[arg-type]


def test_anonymous_direct_access_is_the_default():
    access = RegistryAccess()
    assert (access.credentials, access.password, access.service, access.connect_to) == (
        None,
        None,
        None,
        {},
    )
