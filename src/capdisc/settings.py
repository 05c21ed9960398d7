"""Settings: one model per command, the single source of every default.

Each command's options are one pydantic model here. The same model is a profile's
table (``[batch]``, ``[tools]``, ``[stream]``), declares the command-line flags (the
CLI generates them from the fields: name, help text and panel), and travels unchanged
from the CLI to the strategy and into the workload. :func:`resolve` merges, for every
command, built-in defaults < profile < environment < flags, and turns a bad value
into one line naming the flag.

Adding an option is one field here (with its ``option(...)`` metadata) and one README
line; a test checks that every field has both.

:class:`Settings` is the other kind: about this machine and shell (where profiles and
runs live), read from ``CAPDISC_*`` variables, never from a profile.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from capdisc.errors import UsageError
from capdisc.fields import (
    OptionSpec,
    PositiveSeconds,
    Seconds,
    SecondsTiers,
    Section,
    SectionT,
    flag_of,
    merge_section,
    option,
    option_spec,
    validation_message,
)
from capdisc.templates import BODY_PLACEHOLDERS, SERVER_TOOLS_PLACEHOLDERS, check_body, check_header
from capdisc.verdicts import DEFAULT_GATE, GATED_METRICS

__all__ = [
    "ApiKind",
    "CompareSettings",
    "OptionSpec",
    "PositiveSeconds",
    "RampSettings",
    "Seconds",
    "Settings",
    "StreamRampSettings",
    "TargetConfig",
    "TokenCount",
    "ToolsSettings",
    "Workers",
    "WorkloadSettings",
    "flag_of",
    "load_settings",
    "option",
    "option_spec",
    "resolve",
    "validation_message",
]


ApiKind = Literal["openai", "ollama", "http"]

# The body of api = "http" when the profile gives none: an OpenAI-like chat request.
DEFAULT_HTTP_BODY = (
    '{"model": "{model}", "messages": {messages}, "max_tokens": {max_tokens}, '
    '"temperature": {temperature}, "stream": {stream}}'
)
# Fields that describe an api = "http" target (any other api has its own paths and bodies).
HTTP_ONLY_FIELDS = ("path", "stream_path", "body", "success_field", "usage_field")


def _json_template(known: tuple[str, ...]) -> AfterValidator:
    """A body template's check: its placeholders are among ``known`` and it is JSON once
    filled (:func:`capdisc.templates.check_body`)."""

    def check(text: str | None) -> str | None:
        if text is not None:
            check_body(text, known)
        return text

    return AfterValidator(check)


class TargetConfig(Section):
    """Where the load goes and what each request asks for (profile table ``[target]``)."""

    embedded: bool = option(
        False,
        panel="Target",
        profile_only=True,
        help="Start capdisc's own simulator for the run (see [simulator]).",
    )
    host: str | None = option(
        None,
        panel="Target",
        help="Base URL of the target; alone (no --profile), an OpenAI-compatible API.",
    )
    api: ApiKind = option(
        "openai",
        panel="Target",
        help="Wire format: openai, ollama, or http (any HTTP API described by --path, --body, ...).",
    )
    model: str = option("sim-llm", min_length=1, panel="Target", help="Model name to ask for.")
    api_key_env: str | None = option(
        None,
        panel="Target",
        profile_only=True,
        help="Environment variable holding the API key (never the key).",
    )
    timeout: PositiveSeconds = option(
        60.0, panel="Target", duration=True, help="Timeout of one request (DUR: 500ms, 30s, 8m)."
    )
    prompt: str = option(
        "Explain in one paragraph why constant pacing matters in load tests.",
        min_length=1,
        panel="Target",
        help="Prompt of every request.",
    )
    max_tokens: int = option(64, ge=1, panel="Target", help="Output tokens asked for.")
    output_control: Literal["max_tokens", "min_tokens", "ignore_eos"] = option(
        "max_tokens",
        panel="Target",
        help="How to ask for exactly the output length: max_tokens alone (hosted APIs, "
        "Ollama's num_predict), plus min_tokens (vLLM) or plus ignore_eos (llama.cpp, vLLM).",
    )
    # api = "http": the gateway's own paths, body and stream, described in the profile.
    path: str | None = option(
        None, panel="Target", help='api "http": path of batch (non-streamed) requests, e.g. /chat.'
    )
    stream_path: str | None = option(
        None, panel="Target", help='api "http": path of streamed requests (default: --path).'
    )
    body: Annotated[str | None, _json_template(BODY_PLACEHOLDERS)] = option(
        None,
        panel="Target",
        help='api "http": JSON body template; {prompt} {model} (JSON-escaped, in quotes), '
        "{messages} {max_tokens} {temperature} {stream} are filled per request.",
    )
    stream_format: Literal["sse", "ndjson", "raw"] = option(
        "sse",
        panel="Target",
        help='api "http": how a stream is framed: sse events, ndjson lines, or raw '
        "(each read of the body is a chunk).",
    )
    chunk_rule: Literal["any", "content"] = option(
        "any",
        panel="Target",
        help='api "http": any (every non-empty event but [DONE] is a chunk) or content '
        "(only events with OpenAI/Ollama content, as for those APIs).",
    )
    success_field: str | None = option(
        None,
        panel="Target",
        help='api "http": dotted path that must hold a non-empty value in a batch answer '
        "(default: any non-empty body).",
    )
    usage_field: str | None = option(
        None,
        panel="Target",
        help='api "http": dotted path of the output token count, in a batch answer or a '
        "stream event (default: tokens are chunks).",
    )
    headers: dict[str, str] = option(
        {},
        panel="Target",
        profile_only=True,
        help="Extra request headers; a value may read an environment variable: {env:NAME}.",
    )

    @field_validator("path", "stream_path")
    @classmethod
    def _absolute_path(cls, path: str | None) -> str | None:
        if path is not None and (not path.startswith("/") or any(c.isspace() for c in path)):
            raise ValueError("must be a path starting with / (e.g. /chat), without spaces")
        return path

    @field_validator("success_field", "usage_field")
    @classmethod
    def _dotted(cls, dotted: str | None) -> str | None:
        if dotted is not None and not re.fullmatch(r"[^.\s]+(\.[^.\s]+)*", dotted):
            raise ValueError("must be a dotted path of keys (e.g. usage.output_tokens)")
        return dotted

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            try:
                check_header(name, value)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return headers

    @model_validator(mode="after")
    def _http_fields(self) -> TargetConfig:
        if self.api == "http":
            if self.path is None:
                raise ValueError('path is required with api = "http" (e.g. path = "/chat")')
            if self.stream_format == "raw" and self.chunk_rule == "content":
                raise ValueError(
                    'chunk_rule = "content" reads events: use stream_format sse or ndjson'
                )
            return self
        for name in HTTP_ONLY_FIELDS:
            if getattr(self, name) is not None:
                raise ValueError(f'{name} is only for api = "http" (api is {self.api!r})')
        return self

    @property
    def http_body(self) -> str:
        """The body template of an api = "http" target (the default when none is given)."""
        return self.body if self.body is not None else DEFAULT_HTTP_BODY

    server_metrics: str = option(
        "auto",
        panel="Target",
        metavar="URL|auto|off",
        help="The server's Prometheus metrics, read once a second by capdisc (never by the "
        "users): auto tries the target's /metrics, URL reads that one, off reads none.",
    )

    @field_validator("server_metrics")
    @classmethod
    def _metrics_url(cls, value: str) -> str:
        word = value.strip()
        if word.lower() in ("auto", "off"):
            return word.lower()
        if not re.match(r"^https?://[^/\s]+", word):
            raise ValueError("must be auto, off or an http:// or https:// URL")
        if "@" in word.split("//", 1)[1].split("/", 1)[0]:
            raise ValueError("must not carry credentials")
        return word

    @field_validator("host")
    @classmethod
    def _http_url(cls, host: str | None) -> str | None:
        if host is not None:
            if not re.match(r"^https?://[^/\s]+", host):
                raise ValueError("must be an http:// or https:// base URL")
            if "@" in host.split("//", 1)[1].split("/", 1)[0]:
                raise ValueError("must not carry credentials; use api_key_env")
        return host


_THRESHOLD_ENV = ("LOAD_TEST_FAILURE_THRESHOLD", "CAPDISC_FAILURE_THRESHOLD")


def _gate(value: Any) -> Any:
    """``ttft_p50:10,e2e_p95:5,failures`` -> ((metric, limit or None), ...)."""
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple):
        return value
    found: dict[str, float | None] = {}
    for item in value:
        if isinstance(item, list | tuple) and len(item) == 2:
            name, limit = str(item[0]), item[1]
        else:
            name, _, raw = str(item).partition(":")
            name, raw = name.strip(), raw.strip()
            try:
                limit = float(raw.rstrip("%").removesuffix("pt").strip()) if raw else None
            except ValueError:
                raise ValueError(f"{item!r}: the limit must be a number (e.g. e2e_p95:5)") from None
        if name not in GATED_METRICS:
            raise ValueError(f"unknown metric {name!r} (choose from {', '.join(GATED_METRICS)})")
        if limit is not None and (not isinstance(limit, int | float) or limit < 0):
            raise ValueError(f"{name}: the limit must be 0 or more")
        found[name] = None if limit is None else float(limit)
    if not found:
        raise ValueError("names no metric")
    return tuple(found.items())


Gate = Annotated[tuple[tuple[str, float | None], ...], BeforeValidator(_gate)]


class TokenCount(NamedTuple):
    """A token count drawn per request: ``mean`` with a standard deviation ``sd``."""

    mean: int
    sd: float = 0.0


def _token_count(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        value = TokenCount(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*(?::\s*(\d+(?:\.\d+)?)\s*)?", value)
        if match is None:
            raise ValueError(f"{value!r} is not N or N:SD (tokens, e.g. 512 or 512:64)")
        value = TokenCount(int(match.group(1)), float(match.group(2) or 0))
    if isinstance(value, tuple | list) and len(value) in (1, 2):
        count = TokenCount(*value)
        if count.mean < 1 or count.sd < 0:
            raise ValueError("needs at least 1 token and a standard deviation of 0 or more")
        return count
    return value


Tokens = Annotated[TokenCount, BeforeValidator(_token_count)]


class WorkloadSettings(Section):
    """What the requests carry (profile table ``[workload]``): one prompt, synthetic ones, or a dataset."""

    prompt_tokens: Tokens | None = option(
        None,
        panel="Workload",
        help="Synthetic prompts of about N[:SD] tokens, seeded, each unique from its first "
        "token (no prefix cache can serve it).",
    )
    output_tokens: Tokens | None = option(
        None,
        panel="Workload",
        help="Ask for N[:SD] output tokens per request (see --output-control).",
    )
    dataset: str | None = option(
        None,
        panel="Workload",
        help="Prompts from a JSONL file (a prompt or messages per line, optional "
        "output_tokens), in a seeded order; 'sample' is capdisc's own.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> WorkloadSettings:
        if self.prompt_tokens is not None and self.dataset is not None:
            raise ValueError("prompt_tokens and dataset: choose one source of prompts")
        return self


def _workers(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a number of workers (0 or more) or auto, got {value!r}")
    return value


# A number of local worker processes, or "auto" (resolved from the client ceiling).
Workers = Annotated[int | Literal["auto"], BeforeValidator(_workers)]


def _host_port(value: Any) -> Any:
    host, _, port = str(value).rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT (e.g. 0.0.0.0:5557), got {value!r}")
    return f"{host}:{int(port)}"


HostPort = Annotated[str, BeforeValidator(_host_port)]


class _RunOptions(Section):
    """What every load command shares: when to stop, where the users run, the seed."""

    seed: int = option(
        0, panel="Run", help="Seed of the request bodies and the users' phases (default 0)."
    )

    failure_threshold: int = option(
        5,
        ge=0,
        panel="Run",
        env=_THRESHOLD_ENV,
        help="Stop the run after this many failed requests; compare stream counts each "
        "version's among its latest 20 x N (default 5, 0 = never; env "
        "LOAD_TEST_FAILURE_THRESHOLD).",
    )
    workers: Workers = option(
        0,
        panel="Run",
        metavar="N|auto",
        help="Local Locust worker processes, capdisc being the master (0 = users run here; "
        "auto = as many as the planned peak needs, from the calibrated client ceiling).",
    )
    expect_workers: int = option(
        0,
        ge=0,
        panel="Run",
        help="Wait for this many 'capdisc worker' processes from other machines "
        "(the master listens on --master-bind).",
    )
    master_bind: HostPort = option(
        "127.0.0.1:5557",
        panel="Run",
        metavar="HOST:PORT",
        help="HOST:PORT the master listens on for --expect-workers (default 127.0.0.1:5557, "
        "this machine only; 0.0.0.0:5557 for other machines: the protocol has no "
        "authentication).",
    )


class RampSettings(_RunOptions):
    """``discover batch`` (profile table ``[batch]``): the step ramp and its limits."""

    start_users: int = option(10, ge=1, panel="Ramp", help="Users of the first step.")
    step_users: int = option(10, ge=1, panel="Ramp", help="Users added per step.")
    max_users: int = option(200, ge=1, panel="Ramp", help="Never go above this many users.")
    step_duration: PositiveSeconds = option(
        60.0, panel="Ramp", duration=True, help="Measured time of each step (DUR)."
    )
    interval: PositiveSeconds = option(
        20.0,
        panel="Ramp",
        duration=True,
        help="Constant pacing: each user starts a task every this many seconds (default 20).",
    )
    max_failure_rate: float = option(
        1.0, ge=0, le=100, panel="Ramp", help="A step fails above this failure rate, in percent."
    )
    slo_p95: PositiveSeconds | None = option(
        None,
        panel="Ramp",
        duration=True,
        help="A step fails when its p95 latency is above this (DUR).",
    )
    refine: bool = option(
        True, panel="Ramp", help="Bisect between the last passing and the first failing step."
    )
    keep_going: bool = option(False, panel="Ramp", help="Keep climbing after a failing step.")

    @model_validator(mode="after")
    def _ordered(self) -> RampSettings:
        if self.start_users > self.max_users:
            raise ValueError(f"start_users {self.start_users} is above max_users {self.max_users}")
        return self


class _SloOptions(Section):
    """Token-level limits a request must meet to count as good (goodput)."""

    slo_ttft: SecondsTiers | None = option(
        None,
        panel="SLO",
        duration=True,
        help="Time to first token must stay within this at --slo-percentile (DUR, e.g. 500ms); DUR,DUR,... gives SLO tiers, paired by position.",
    )
    slo_tpot: SecondsTiers | None = option(
        None,
        panel="SLO",
        duration=True,
        help="Time per output token after the first must stay within this (DUR, e.g. 50ms); DUR,DUR,... gives SLO tiers, paired by position.",
    )
    slo_e2e: SecondsTiers | None = option(
        None,
        panel="SLO",
        duration=True,
        help="Whole request time must stay within this at --slo-percentile (DUR); DUR,DUR,... gives SLO tiers, paired by position.",
    )
    slo_percentile: float = option(
        95.0,
        ge=50,
        le=99.9,
        panel="SLO",
        help="Percentile at which the --slo-* limits hold (default 95).",
    )
    min_goodput: float | None = option(
        None,
        gt=0,
        le=100,
        panel="SLO",
        help="Least share of requests, in percent, that must meet every --slo-* limit.",
    )

    @model_validator(mode="after")
    def _goodput_needs_a_limit(self) -> _SloOptions:
        if self.min_goodput is not None and not self.slo_limits_set:
            raise ValueError("min_goodput needs at least one of slo_ttft, slo_tpot, slo_e2e")
        return self

    @model_validator(mode="after")
    def _tiers_pair_up(self) -> _SloOptions:
        tiered = [
            (name, len(v))
            for name, v in (
                ("slo_ttft", self.slo_ttft),
                ("slo_tpot", self.slo_tpot),
                ("slo_e2e", self.slo_e2e),
            )
            if v and len(v) > 1
        ]
        for name, count in tiered[1:]:
            if count != tiered[0][1]:
                raise ValueError(
                    f"{name} gives {count} limits and {tiered[0][0]} {tiered[0][1]}: SLO tiers "
                    "pair up by position (give each the same number of limits, or one)"
                )
        return self

    @property
    def slo_limits_set(self) -> bool:
        """True when at least one --slo-* limit is given."""
        return any(v is not None for v in (self.slo_ttft, self.slo_tpot, self.slo_e2e))

    @property
    def slo_tier_count(self) -> int:
        """How many SLO tiers the limits give (1: a single limit each; 0: none)."""
        lengths = [len(v) for v in (self.slo_ttft, self.slo_tpot, self.slo_e2e) if v]
        return max(lengths, default=0)

    def slo_tier(self, index: int) -> tuple[float | None, float | None, float | None]:
        """The (ttft, tpot, e2e) limits of tier ``index`` in seconds (a single limit in every tier)."""

        def at(values: tuple[float, ...] | None) -> float | None:
            if not values:
                return None
            return values[index] if len(values) > 1 else values[0]

        return at(self.slo_ttft), at(self.slo_tpot), at(self.slo_e2e)


class StreamRampSettings(RampSettings, _SloOptions):
    """``discover stream`` (profile table ``[discover_stream]``): the ramp on streaming
    requests, judged on the token SLOs as well."""


class ToolsSettings(RampSettings):
    """``discover tools`` (profile table ``[tools]``): the ramp, and how a tool task is made."""

    tools: int = option(
        2, ge=0, le=64, panel="Load", help="Tool calls in every task (default from the profile, 2)."
    )
    orchestration: Literal["client", "server"] = option(
        "client",
        panel="Load",
        profile_only=True,
        help="client: capdisc drives N forced tool rounds; server: one request per task.",
    )
    server_path: str = option(
        "/v1/agent/run",
        panel="Load",
        profile_only=True,
        help="Server-orchestrated: endpoint of one whole task.",
    )
    server_body: Annotated[str, _json_template(SERVER_TOOLS_PLACEHOLDERS)] = option(
        '{"model": "{model}", "prompt": "{prompt}", "tool_calls": {tools}}',
        panel="Load",
        profile_only=True,
        help="Server-orchestrated: JSON template; {tools} and the body placeholders of "
        "target.body ({model}, {prompt}, ...) are filled.",
    )
    server_count_field: str = option(
        "tool_calls",
        panel="Load",
        profile_only=True,
        help="Server-orchestrated: dotted path of the tool-call count in the answer.",
    )


class CompareSettings(_RunOptions, _SloOptions):
    """``compare stream`` (profile table ``[stream]``): the fixed load both versions get."""

    @model_validator(mode="after")
    def _one_tier(self) -> CompareSettings:
        for name in ("slo_ttft", "slo_tpot", "slo_e2e"):
            values = getattr(self, name)
            if values and len(values) > 1:
                raise ValueError(
                    f"{name} takes one limit in compare stream (SLO tiers are for discover stream)"
                )
        return self

    users: int = option(200, ge=1, panel="Load", help="Fixed users (default 200).")
    interval: PositiveSeconds = option(
        20.0,
        panel="Load",
        duration=True,
        help="Constant pacing: each user starts a task every this many seconds (default 20).",
    )
    duration: PositiveSeconds = option(
        480.0, panel="Load", duration=True, help="Measured time per version (DUR, default 8m)."
    )
    temperature: float = option(
        0.0, ge=0, le=2, panel="Load", help="Sampling temperature (default 0)."
    )
    blocks: int = option(
        4,
        ge=1,
        panel="Load",
        help="Blocks per version, run as A B B A pairs (default 4 pairs; 2+ for an interval).",
    )
    sequential: bool = option(
        False,
        panel="Load",
        help="Run all of A, then all of B (no pairs: drift between them is not cancelled).",
    )
    margin: float = option(
        2.0,
        ge=0,
        panel="Load",
        help="Equivalent when B's change lies within +/- this many percent (default 2).",
    )
    failure_margin: float = option(
        0.5,
        ge=0,
        panel="Load",
        metavar="PTS",
        help="A failure rate higher by more than this many points (the interval above it) "
        "makes B slower, whatever its latency (default 0.5).",
    )
    gate: Gate | None = option(
        None,
        panel="Load",
        metavar="METRIC[:PCT],...",
        help="The metrics that decide the verdict and gate the exit code, each with its "
        "regression limit: ttft_p50, ttft_p95, tpot_p50, e2e_p50, e2e_p95 (percent), "
        "failures (points). Default: ttft_p50, tpot_p50, e2e_p50, e2e_p95 and failures, "
        "gated only with --fail-on-regression. A metric without a limit takes "
        "--fail-on-regression (failures: --failure-margin), else the margin.",
    )
    fail_on_regression: float | None = option(
        None,
        ge=0,
        panel="Load",
        help="Gate every judged metric at PCT percent (failures at --failure-margin): exit 1 "
        "when an interval shows B slower beyond its limit, 0 when every interval shows B "
        "within it, else 5 (inconclusive: run longer).",
    )

    def gate_limits(self) -> dict[str, float] | None:
        """The judged metrics with their regression limits; None when nothing is gated."""
        if self.gate is None and self.fail_on_regression is None:
            return None
        return {name: self._limit(name, pct) for name, pct in self.judged_with_limits()}

    def judged_with_limits(self) -> tuple[tuple[str, float | None], ...]:
        """The metrics that decide the verdict, each with the limit the user gave (or None)."""
        if self.gate is not None:
            return self.gate
        return tuple((name, None) for name in DEFAULT_GATE)

    def _limit(self, name: str, given: float | None) -> float:
        if given is not None:
            return given
        if name == "failures":
            return self.failure_margin
        return self.fail_on_regression if self.fail_on_regression is not None else self.margin


class Settings(BaseSettings):
    """Defaults a team sets once in its environment."""

    model_config = SettingsConfigDict(env_prefix="CAPDISC_", extra="ignore", frozen=True)

    failure_threshold: int = Field(
        default=5,
        ge=0,
        validation_alias=AliasChoices(*_THRESHOLD_ENV),
        description="Stop a run after this many failed requests (0 = never).",
    )
    profile: str = Field(default="demo", description="Profile used when none is given.")
    profiles_dir: Path | None = Field(default=None, description="Extra directory of profiles.")
    runs_dir: Path = Field(default=Path("runs"), description="Where run directories are made.")
    cache_dir: Path | None = Field(
        default=None,
        description="Where the client ceiling is cached (default: the user's cache directory).",
    )


def resolve(
    model: type[SectionT],
    profile_section: BaseModel | None,
    env: Settings,
    flags: Mapping[str, Any],
) -> SectionT:
    """Merge built-in defaults < profile < environment < flags into ``model`` (a bad
    value is a ``UsageError`` naming its flag)."""
    overrides = {name: getattr(env, name) for name in env.model_fields_set}
    return merge_section(model, profile_section, overrides, flags)


def load_settings() -> Settings:
    """The environment's settings; a bad variable is a ``UsageError`` naming it."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = str(first["loc"][0]) if first["loc"] else ""
        name = (
            _THRESHOLD_ENV[0]
            if "failure" in loc or "LOAD_TEST" in loc
            else ("CAPDISC_" + loc.upper() if loc else "CAPDISC_*")
        )
        raise UsageError(f"{name}: {first['msg']}") from None
