"""How ``compare stream`` reads its two sides: profiles, bare URLs, target flags on both."""

from __future__ import annotations

import pytest

from capdisc.errors import ProfileError
from capdisc.strategies.compare_stream import resolve_source


def test_target_flags_apply_to_a_bare_url_and_to_a_profile() -> None:
    """--model, --api, --max-tokens, ... reach both live versions, so two URLs compare as they are."""
    flags = {"model": "llama3", "api": "ollama", "max_tokens": 16, "timeout": "30s"}
    url = resolve_source("http://127.0.0.1:9", "a", None, flags)
    assert url.profile is not None
    target = url.profile.target
    assert (target.host, target.model, target.api, target.max_tokens, target.timeout) == (
        "http://127.0.0.1:9",
        "llama3",
        "ollama",
        16,
        30.0,
    )
    profile = resolve_source("v2", "b", None, {"model": "other", "prompt": None})
    assert profile.profile is not None and profile.profile.target.model == "other"
    assert profile.profile.embedded  # a target flag other than --host keeps the simulator


def test_a_bad_target_flag_is_named() -> None:
    """A wrong value names its flag, whichever side it reached first."""
    with pytest.raises(ProfileError, match="--max-tokens"):
        resolve_source("http://127.0.0.1:9", "a", None, {"max_tokens": 0})
