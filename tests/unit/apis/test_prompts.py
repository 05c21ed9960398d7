"""What each request asks: seeded synthetic prompts, datasets, exact output lengths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capdisc.apis.prompts import SAMPLE_DATASET, load_dataset, prompt_source
from capdisc.apis.wire import OllamaFormat, OpenAIFormat
from capdisc.errors import UsageError
from capdisc.settings import WorkloadSettings


def synthetic(**fields: object) -> list[tuple[str, int]]:
    source = prompt_source(WorkloadSettings.model_validate(fields), "fixed", 64, seed=7)
    return [(str(m[-1]["content"]), n) for m, n in (source.request(i) for i in range(200))]


def test_synthetic_prompts_are_unique_from_their_first_token_and_about_n_long() -> None:
    """No prefix cache can serve them: the first word already differs; the length is N."""
    prompts = synthetic(prompt_tokens="300:30")
    first_words = [text.split()[0] for text, _ in prompts]
    assert len(set(first_words)) == len(prompts)
    lengths = [len(text.split()) for text, _ in prompts]
    mean = sum(lengths) / len(lengths)
    assert 290 <= mean <= 300  # N words including the prefix (about N tokens)
    assert max(lengths) - min(lengths) > 40  # SD 30 spreads them


def test_the_same_seed_and_place_give_the_same_request() -> None:
    """Both versions of a comparison get request n's prompt as request n."""
    assert synthetic(prompt_tokens=50, output_tokens="20:5") == synthetic(
        prompt_tokens=50, output_tokens="20:5"
    )
    other = prompt_source(WorkloadSettings(prompt_tokens=50), "fixed", 64, seed=8)
    assert other.request(0) != prompt_source(
        WorkloadSettings(prompt_tokens=50), "fixed", 64, seed=7
    ).request(0)


def test_output_tokens_are_drawn_per_request_and_never_below_one() -> None:
    drawn = [n for _, n in synthetic(output_tokens="3:5")]
    assert min(drawn) >= 1 and len(set(drawn)) > 3
    assert {n for _, n in synthetic(output_tokens=32)} == {32}


def test_one_prompt_by_default() -> None:
    source = prompt_source(WorkloadSettings(), "fixed", 64, seed=0)
    assert source.fixed
    assert source.request(5) == ([{"role": "user", "content": "fixed"}], 64)


def test_the_sample_dataset_loads_and_is_served_in_a_seeded_order() -> None:
    entries = load_dataset("sample")
    assert len(entries) >= 20 and SAMPLE_DATASET.is_file()
    source = prompt_source(WorkloadSettings(dataset="sample"), "fixed", 64, seed=3)
    first = [source.request(i)[0] for i in range(len(entries))]
    # Every entry once per round, in an order that is not the file's.
    assert len({json.dumps(m) for m in first}) == len(entries)
    assert [e.messages for e in entries] != [tuple(m) for m in first]
    # An entry's own output length is asked for, unless --output-tokens says otherwise.
    with_length = next(e for e in entries if e.output_tokens is not None)
    index = next(i for i in range(len(entries)) if tuple(first[i]) == with_length.messages)
    assert source.request(index)[1] == with_length.output_tokens


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not JSON"),
        ('{"messages": []}', "line 2: messages must be a non-empty list"),
        ('{"prompt": "x", "output_tokens": 0}', "line 2: output_tokens must be a positive"),
        ('{"text": "x"}', 'line 2: expected "prompt"'),
        ('{"messages": [{"role": "robot", "content": "x"}]}', "line 2: unknown role"),
    ],
)
def test_a_bad_dataset_line_is_named_by_its_number(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "fine"}\n' + line + "\n")
    with pytest.raises(UsageError, match=message) as info:
        load_dataset(str(path))
    assert info.value.message.startswith(f"--dataset {path}: ")


def test_exact_output_lengths_per_server_kind() -> None:
    """min_tokens (vLLM) or ignore_eos (llama.cpp, vLLM) next to max_tokens; Ollama num_predict."""
    common = {"model": "m", "messages": [], "max_tokens": 40, "temperature": 0.0, "stream": True}
    assert OpenAIFormat().body(**common, exact="min_tokens")["min_tokens"] == 40
    assert OpenAIFormat().body(**common, exact="ignore_eos")["ignore_eos"] is True
    plain = OpenAIFormat().body(**common)
    assert "min_tokens" not in plain and "ignore_eos" not in plain
    assert plain["stream_options"] == {"include_usage": True}
    assert OllamaFormat().body(**common, exact="ignore_eos")["options"]["num_predict"] == 40
