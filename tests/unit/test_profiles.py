"""Profiles and settings: shipped files, strict validation, secrets, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from capdisc.errors import ProfileError
from capdisc.profiles import (
    list_profiles,
    load_profile,
    shipped_profiles_dir,
    with_target_overrides,
)
from capdisc.settings import Settings

SHIPPED = sorted(p.stem for p in shipped_profiles_dir().glob("*.toml"))


def test_the_promised_profiles_ship() -> None:
    """demo, v1, v2 and the three templates are shipped."""
    assert {"demo", "v1", "v2", "ollama", "openai", "vllm"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_is_valid(name: str) -> None:
    """Each shipped profile loads; embedded ones have no host, templates have one."""
    profile = load_profile(name)
    assert profile.embedded == (profile.target.host is None)


def test_v2_is_faster_than_v1_by_its_capacity_model() -> None:
    """The v1/v2 pair differs in service time so a comparison has something to find."""
    v1 = load_profile("v1").simulator_config
    v2 = load_profile("v2").simulator_config
    assert v2.service_time_s() < 0.9 * v1.service_time_s()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[target]\nembedded = true\nbogus = 1\n", "target.bogus: unknown key"),
        ("[target]\nembedded = true\nmax_tokens = 'x'\n", "target.max_tokens:"),
        ("[target]\nembedded = true\n[batch]\nstep_duration = '3 weeks'\n", "batch.step_duration:"),
        ("[target]\nembedded = true\n[batch]\nstart_users = 50\nmax_users = 10\n", "batch:"),
        ("[target]\napi = 'openai'\n", "target.host: required"),
        ("[target]\nhost = 'ftp://x'\n", "target.host"),
        ("[target]\nhost = 'http://u:pw@127.0.0.1'\n", "must not carry credentials"),
        ("[target]\nembedded = true\napi_key = 'abc'\n", "must not hold secrets"),
        ("[target]\nembedded = true\nprompt = 'sk-123456'\n", "must not hold secrets"),
        ("[simulator]\nslots = 0\n", "simulator.slots:"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_profiles_name_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    """A bad profile is one ProfileError naming the file and the field path."""
    path = _write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    assert str(path) in info.value.message
    assert expected in info.value.message
    assert "\n" not in info.value.message


def test_unknown_profile_lists_the_known_ones() -> None:
    """A typo in a profile name shows the names that exist."""
    with pytest.raises(ProfileError, match=r"known: .*demo"):
        load_profile("dmeo")


def test_profiles_dir_setting_adds_a_directory(tmp_path: Path) -> None:
    """A profile in CAPDISC_PROFILES_DIR is found by name."""
    (tmp_path / "mine.toml").write_text("[target]\nembedded = true\n")
    assert "mine" in list_profiles(tmp_path)
    assert load_profile("mine", tmp_path).embedded


def test_host_override_replaces_the_embedded_simulator() -> None:
    """--host turns an embedded profile into a plain target at that URL."""
    profile = with_target_overrides(load_profile("demo"), {"host": "http://127.0.0.1:9"})
    assert not profile.embedded and profile.target.host == "http://127.0.0.1:9"


def test_override_errors_name_the_flag() -> None:
    """A bad flag value is reported with the flag, not the profile field."""
    with pytest.raises(ProfileError, match=r"^--max-tokens:"):
        with_target_overrides(load_profile("demo"), {"max_tokens": 0})
    with pytest.raises(ProfileError, match=r"^--api:"):
        with_target_overrides(load_profile("demo"), {"api": "grpc"})


def test_failure_threshold_comes_from_the_seed_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """LOAD_TEST_FAILURE_THRESHOLD sets the threshold (0 disables), default 5."""
    monkeypatch.delenv("LOAD_TEST_FAILURE_THRESHOLD", raising=False)
    assert Settings().failure_threshold == 5
    monkeypatch.setenv("LOAD_TEST_FAILURE_THRESHOLD", "0")
    assert Settings().failure_threshold == 0
    monkeypatch.setenv("CAPDISC_PROFILE", "v1")
    assert Settings().profile == "v1"


def _every_field() -> list[tuple[str, str]]:
    from capdisc.profiles import Profile

    fields = []
    for section, info in Profile.model_fields.items():
        model = info.annotation
        inner = getattr(model, "__args__", (model,))[0]  # SimulatorConfig | None -> SimulatorConfig
        for name in getattr(inner, "model_fields", {}):
            fields.append((section, name))
    return fields


@pytest.mark.parametrize(("section", "field"), _every_field())
def test_every_profile_field_with_a_wrong_type_is_named(
    tmp_path: Path, section: str, field: str
) -> None:
    """Each field of each table, given a wrong type, gets one line naming table.field."""
    base = "" if section == "target" else "[target]\nembedded = true\n"
    # A table where a value is expected (or a string where a table is) is wrong for every field.
    value = '"not a table"' if field == "faults" else "{ wrong = [1, 2] }"
    path = _write(tmp_path, f"{base}[{section}]\n{field} = {value}\n")
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    assert f"{section}.{field}" in info.value.message
    assert "\n" not in info.value.message
