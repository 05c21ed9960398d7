"""Request templates and api = "http" target fields: every mistake is one line naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from capdisc.apis.formats import format_for
from capdisc.apis.http_api import HttpFormat
from capdisc.errors import ProfileError, UsageError
from capdisc.profiles import load_profile, plain_host_profile, with_target_overrides
from capdisc.settings import TargetConfig
from capdisc.target import read_headers
from capdisc.templates import BODY_PLACEHOLDERS, Template, body_values, check_body

BODY = '{"question": "{prompt}", "max_tokens": {max_tokens}, "stream": {stream}}'


def http_config(**fields: object) -> TargetConfig:
    return TargetConfig.model_validate({"api": "http", "path": "/chat", **fields})


def test_a_template_is_filled_with_json_values() -> None:
    template = check_body(
        '{"q": "{prompt}", "m": "{model}", "h": {messages}, "n": {max_tokens}, '
        '"t": {temperature}, "s": {stream}}'
    )
    messages = [{"role": "user", "content": 'a "quoted"\nline \u00e9'}]
    values = body_values(
        messages=messages, model="llama3", max_tokens=7, temperature=0.2, stream=True
    )
    assert json.loads(template.fill(values)) == {
        "q": 'a "quoted"\nline \u00e9',
        "m": "llama3",
        "h": messages,
        "n": 7,
        "t": 0.2,
        "s": True,
    }
    assert Template.parse("{}", BODY_PLACEHOLDERS).fill({}) == "{}"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"q": "{question}"}', "unknown placeholder {question}"),
        ('{"q": "{env:KEY}"}', "environment variables only in headers"),
        ('{"q": {prompt}}', "not JSON once filled"),
        ('{"q": "{prompt}",}', "not JSON once filled"),
    ],
)
def test_a_bad_body_names_the_field(body: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        http_config(body=body)
    assert info.value.errors()[0]["loc"] == ("body",) and message in str(info.value)


def test_profile_and_flag_errors_are_one_line_naming_the_field(tmp_path: Path) -> None:
    profile = tmp_path / "gw.toml"
    profile.write_text(
        '[target]\napi = "http"\nhost = "http://127.0.0.1:9"\npath = "/chat"\n'
        'body = \'{"q": "{question}"}\'\n'
    )
    with pytest.raises(ProfileError, match=r"gw.toml: target.body: unknown placeholder"):
        load_profile(str(profile))
    base = plain_host_profile("http://127.0.0.1:9")
    with pytest.raises(ProfileError, match=r"^--path: path is required with api"):
        with_target_overrides(base, {"api": "http"})
    with pytest.raises(ProfileError, match=r"^--body: unknown placeholder \{x\}"):
        with_target_overrides(base, {"api": "http", "path": "/c", "body": '{"a": "{x}"}'})
    with pytest.raises(ProfileError, match=r"^--stream-path: stream_path is only for api"):
        with_target_overrides(base, {"stream_path": "/s"})
    with pytest.raises(ProfileError, match=r"^--chunk-rule: chunk_rule = \"content\" reads"):
        with_target_overrides(
            base, {"api": "http", "path": "/c", "stream_format": "raw", "chunk_rule": "content"}
        )


def test_headers_read_secrets_from_the_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = http_config(headers={"X-Api-Key": "{env:GW_KEY}", "X-Tenant": "team-{env:GW_TEAM}"})
    monkeypatch.setenv("GW_KEY", "s3cret-value")
    monkeypatch.setenv("GW_TEAM", "blue")
    headers = read_headers(config)
    assert {k: v.get_secret_value() for k, v in headers.items()} == {
        "X-Api-Key": "s3cret-value",
        "X-Tenant": "team-blue",
    }
    assert "s3cret" not in repr(headers)
    monkeypatch.delenv("GW_KEY")
    with pytest.raises(UsageError, match=r"^target.headers.X-Api-Key: environment variable GW_KEY"):
        read_headers(config)
    with pytest.raises(ValidationError, match="a header takes only"):
        http_config(headers={"X-A": "{prompt}"})
    profile = tmp_path / "p.toml"
    for literal in ('"Bearer abc"', '"sk-123"', '"abc123"'):
        profile.write_text(
            f'[target]\nhost = "http://127.0.0.1:9"\nheaders = {{ "Authorization" = {literal} }}\n'
        )
        with pytest.raises(
            ProfileError, match=r"target\.headers\.Authorization: profiles must not"
        ):
            load_profile(str(profile))
    profile.write_text(
        '[target]\nhost = "http://127.0.0.1:9"\n'
        'headers = { "Authorization" = "Bearer {env:GW_KEY}", "X-Tenant" = "blue" }\n'
    )
    assert load_profile(str(profile)).target.headers["X-Tenant"] == "blue"


def test_http_format_paths_bodies_and_batch_answers() -> None:
    fmt = format_for(
        http_config(
            stream_path="/chat/stream",
            body=BODY,
            success_field="answer.text",
            usage_field="usage.0",
        )
    )
    assert isinstance(fmt, HttpFormat)
    assert (fmt.chat_path, fmt.stream_path) == ("/chat", "/chat/stream")
    payload = fmt.payload(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=3,
        temperature=0.0,
        stream=True,
    )
    assert json.loads(payload) == {"question": "hi", "max_tokens": 3, "stream": True}
    answer = fmt.parse_answer(b'{"answer": {"text": "Hello"}, "usage": [5]}')
    assert answer.content == "Hello" and answer.output_tokens == 5 and answer.has_completion
    for body, error in [
        (b'{"answer": {"text": ""}}', "is empty"),
        (b'{"answer": {}}', "has no 'answer.text'"),
        (b"Hello", "not JSON"),
        (b"  ", "empty"),
    ]:
        with pytest.raises(ValueError, match=error):
            fmt.parse_answer(body)
    plain = format_for(http_config())
    assert plain.stream_path == "/chat" and plain.parse_answer(b"any text").has_completion
    default_body = json.loads(
        plain.payload(
            model="m",
            messages=[{"role": "user", "content": "x"}],
            max_tokens=2,
            temperature=0,
            stream=False,
        )
    )
    assert default_body["messages"] == [{"role": "user", "content": "x"}]


def test_a_target_masks_its_secrets_in_what_came_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows and the preflight pass server text through mask(): no secret survives it."""
    from pydantic import SecretStr

    from capdisc.target import Target

    monkeypatch.setenv("GW_KEY", "s3cret-value")
    config = http_config(headers={"Authorization": "Bearer {env:GW_KEY}", "X-Team": "blue"})
    target = Target(
        base_url="http://127.0.0.1:9",
        config=config,
        label="gw",
        api_key=SecretStr("sk-other-key"),
        headers=read_headers(config),
    )
    echoed = "refused Bearer s3cret-value (raw s3cret-value) and sk-other-key for team blue"
    assert target.mask(echoed) == "refused *** (raw ***) and *** for team blue"
    assert target.auth_headers()["Authorization"] == "Bearer sk-other-key"  # the key wins
