"""Settings: source priority, and errors that name the key a human has to fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from signaling.config import (
    DEMO_CONFIG,
    ConfigError,
    Settings,
    load_settings,
)
from signaling.model import Channel
from signaling.qualification import QuestionSet

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("SHOPCALL_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shopcall.toml"
    path.write_text(text)
    return path


def config_error(tmp_path: Path, text: str, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), **kwargs)  # type: ignore[arg-type]
    return str(info.value)


STORE = '[[stores]]\nid = "lyon"\nname = "Lyon"\n'


def test_defaults() -> None:
    s = load_settings()
    assert (s.server.host, s.server.port) == ("127.0.0.1", 8080)
    assert s.database.path == Path("var/shopcall.db") and s.database.synchronous == "full"
    assert s.auth.secret is None
    assert s.auth.shopper_token_ttl_s == 30 * 86400 and s.auth.staff_token_ttl_s == 12 * 3600
    assert s.limits.max_message_bytes == 65536 and s.routing.heartbeat_timeout_s == 15
    assert s.stores == [] and s.staff == [] and s.qualification == []


def test_priority_overrides_env_toml_defaults(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[server]\nhost = "0.0.0.0"\nport = 7000\npublic_url = "https://x.test/"\n'
                           "[routing]\nmissed_after_s = 90\noffer_timeout_s = 10\n")
    monkeypatch.setenv("SHOPCALL_SERVER__PORT", "9000")
    monkeypatch.setenv("SHOPCALL_ROUTING__MISSED_AFTER_S", "60")
    s = load_settings(path, {"server.port": 9100, "database.path": "x.db"})
    assert s.server.port == 9100  # override beats env beats TOML
    assert s.routing.missed_after_s == 60  # env beats TOML
    assert s.server.host == "0.0.0.0" and s.routing.offer_timeout_s == 10  # TOML beats default
    assert s.server.public_url == "https://x.test"
    assert s.database.path == Path("x.db")
    assert s.routing.heartbeat_interval_s == 5  # default, merged within the same section


def test_env_alone_and_json_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPCALL_AUTH__SECRET", "s" * 32)
    monkeypatch.setenv("SHOPCALL_MEDIA__ICE_SERVERS", '[{"urls": "stun:stun.example.org"}]')
    monkeypatch.setenv("SHOPCALL_SERVER__PUBLIC_URL", "")  # empty means unset
    s = load_settings()
    assert s.auth.secret == "s" * 32 and s.server.public_url is None
    assert s.media.ice_servers[0].urls == ["stun:stun.example.org"]


def test_stores_staff_and_qualification_to_model(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, STORE + """
[[staff]]
id = "ana"
name = "Ana"
store = "lyon"
skills = ["pianos"]
channels = ["chat"]
[[qualification]]
id = "q"
text = "What?"
options = [{id = "a", label = "A", skill = "pianos"}, {id = "b", label = "B"}]
"""))
    (store,), (member,) = s.store_models(), s.staff_models()
    assert store.id == "lyon" and store.overflow is True
    assert member.store_id == "lyon" and member.skills == frozenset({"pianos"})
    assert member.channels == frozenset({Channel.CHAT}) and member.max_conversations == 2
    assert s.qualification_dicts() == [{"id": "q", "text": "What?", "options": [
        {"id": "a", "label": "A", "skill": "pianos"}, {"id": "b", "label": "B", "skill": None}]}]


@pytest.mark.parametrize(("text", "expected"), [
    ("[server]\nport = 70000\n", "server.port: Input should be less than or equal to 65535"),
    ("[server]\nport = -1\n", "server.port: Input should be greater than or equal to 0"),
    ("[routing]\nmissed_after_s = -5\n",
     "invalid configuration: routing.missed_after_s: Input should be greater than 0"),
    ("[server]\nprot = 8080\n", "server.prot: unknown key (allowed: host, port,"),
    ("[serverr]\nport = 1\n", "serverr: unknown key"),
    ("[limits]\nmax_message_bytes = 10\n", "limits.max_message_bytes"),
    ("[database]\nsynchronous = \"off\"\n", "database.synchronous"),
    ("[auth]\nsecret = \"short\"\n", "auth.secret: String should have at least 32 characters"),
    (STORE + '[[staff]]\nid = "a"\nname = "A"\nstore = "nice"\n',
     "staff[0].store: unknown store 'nice' (stores: lyon)"),
    (STORE + '[[staff]]\nid = "a"\nname = "A"\nstore = "lyon"\nmax_conversations = 21\n',
     "staff[0].max_conversations"),
    ("[media]\nice_servers = [{urls = [\"http://x\"]}]\n", "media.ice_servers[0].urls"),
    ("[routing]\nheartbeat_interval_s = 20\nheartbeat_timeout_s = 20\n",
     "routing.heartbeat_timeout_s: must be greater than heartbeat_interval_s"),
])
def test_invalid_values_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in config_error(tmp_path, text)


def test_every_offending_key_is_listed(tmp_path: Path) -> None:
    message = config_error(
        tmp_path, "[server]\nport = -1\nbogus = 1\n[limits]\nmessage_burst = 0\n")
    for key in ("server.port", "server.bogus", "limits.message_burst"):
        assert key in message
    assert "got -1" in message


def test_secret_is_never_echoed(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[auth]\nsecret = "hunter2-short"\n')
    assert "auth.secret" in message and "hunter2" not in message


def test_heartbeat_error_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPCALL_ROUTING__HEARTBEAT_TIMEOUT_S", "4")
    with pytest.raises(ConfigError, match=r"heartbeat_timeout_s.*heartbeat_interval_s"):
        load_settings()


def test_bad_override_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"routing\.missed_after_s"):
        load_settings(None, {"routing.missed_after_s": 0})
    with pytest.raises(ConfigError, match=r"server\.nope: unknown key"):
        load_settings(None, {"server.nope": 1})


def test_duplicate_ids(tmp_path: Path) -> None:
    message = config_error(tmp_path, STORE + STORE)
    assert "stores[1].id: duplicate id 'lyon'" in message


def test_malformed_env_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPCALL_STORES", "not json")
    with pytest.raises(ConfigError, match="SHOPCALL_STORES"):
        load_settings()


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[server]\nport = 80\nhost = \n')
    assert "shopcall.toml" in message and "line 3" in message


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.toml"):
        load_settings(tmp_path / "nope.toml")


def test_settings_without_loader_reads_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPCALL_SERVER__PORT", "9000")
    assert Settings().server.port == 9000


def test_demo_config_is_valid() -> None:
    s = load_settings(DEMO_CONFIG)
    assert {st.id for st in s.stores} == {"lyon", "paris"}
    assert "Harmonie Music, Lyon" in {st.name for st in s.stores}
    assert 2 <= len(s.staff) <= 3 and len(s.qualification) == 2
    skills = {skill for member in s.staff for skill in member.skills}
    assert skills == {"guitars", "pianos", "recording"}
    offered = {o.skill for q in s.qualification for o in q.options} - {None}
    assert offered <= skills
    questions = QuestionSet.from_config(s.qualification_dicts())
    assert questions.pick_skill({"instrument": "piano"}) == "pianos"
