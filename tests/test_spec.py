from pathlib import Path

import pytest

from ragkit.errors import ConfigError
from ragkit.spec import load_spec, pipeline_names


def test_every_named_pipeline_loads():
    names = pipeline_names()
    assert "naive" in names
    for name in names:
        spec = load_spec(name)
        assert spec.name == name


def test_unknown_pipeline_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown pipeline 'nope'.*naive"):
        load_spec("nope")


def test_bad_yaml_names_file_and_line(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("retriever:\n  kind: dense\n   top_k: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+: invalid YAML"):
        load_spec(bad)


def test_unknown_key_names_file_and_key(tmp_path: Path):
    spec = tmp_path / "p.yaml"
    spec.write_text("retriever:\n  kind: dense\n  topk: 3\n")
    with pytest.raises(ConfigError, match=r"p\.yaml: retriever\.topk: unknown key"):
        load_spec(spec)


def test_bad_value_names_key_and_value(tmp_path: Path):
    spec = tmp_path / "p.yaml"
    spec.write_text("retriever:\n  top_k: 0\n")
    with pytest.raises(ConfigError, match=r"retriever\.top_k: .*greater than 0.*got 0"):
        load_spec(spec)
    spec.write_text("generator:\n  kind: gpt5\n")
    with pytest.raises(ConfigError, match=r"generator\.kind"):
        load_spec(spec)


def test_non_mapping_spec_is_rejected(tmp_path: Path):
    spec = tmp_path / "p.yaml"
    spec.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_spec(spec)


def test_store_override_keeps_everything_else():
    spec = load_spec("naive")
    moved = spec.with_store("http://127.0.0.1:9", "other")
    assert moved.store.location == "http://127.0.0.1:9" and moved.store.collection == "other"
    assert moved.retriever == spec.retriever and moved.generator == spec.generator


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "chunker: {chunk_tokens: 16, overlap_tokens: 64}\n",
            "chunker.overlap_tokens: must be less than chunker.chunk_tokens (16) (got 64)",
        ),
        (
            "chunker: {overlap_tokens: 256}\n",  # as long as the default window
            "chunker.overlap_tokens: must be less than chunker.chunk_tokens (256) (got 256)",
        ),
        ("generator: {kind: openai}\n", "generator.base_url: required when generator.kind is"),
        ("generator: {kind: vllm}\n", "generator.model: required when generator.kind is 'vllm'"),
        ("rerank: {kind: cross-encoder}\n", "rerank.model: required when rerank.kind is"),
    ],
)
def test_rules_between_settings_fail_at_load_in_one_line(tmp_path: Path, body, expected):
    spec = tmp_path / "my.yaml"
    spec.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_spec(spec)
    message = str(err.value)
    assert message.startswith(f"{spec}: {expected}")
    assert "\n" not in message and "pydantic" not in message


def test_overrides_in_python_meet_the_same_rules():
    with pytest.raises(ConfigError, match=r"chunker\.overlap_tokens: must be less than"):
        load_spec("naive").override(chunker={"chunk_tokens": 64, "overlap_tokens": 64})
    fine = load_spec("naive").override(chunker={"chunk_tokens": 64, "overlap_tokens": 63})
    assert fine.chunker.overlap_tokens == 63


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("collections:OrderedDict", "collections:OrderedDict is not a generator: it lacks"),
        ("pathlib:Path", "pathlib:Path is not a generator: it lacks invoke, batch, stream"),
        ("no_such_module_here:Thing", "cannot import 'no_such_module_here'"),
    ],
)
def test_a_class_named_by_import_path_must_be_that_component(tmp_path: Path, kind, expected):
    spec = tmp_path / "my.yaml"
    spec.write_text(f"generator: {{kind: '{kind}'}}\n")
    with pytest.raises(ConfigError) as err:
        load_spec(spec)
    assert str(err.value).startswith(f"{spec}: generator.kind: ")
    assert expected in str(err.value)


def test_store_and_top_k_overrides_are_validated_as_yaml_is():
    spec = load_spec("naive")
    with pytest.raises(ConfigError, match=r"store\.collection: .*3 to 63 characters"):
        spec.with_store(collection="ab")
    with pytest.raises(ConfigError, match=r"retriever\.top_k: .*greater than 0"):
        spec.override(retriever={"top_k": 0})
    moved = spec.with_store("http://127.0.0.1:8000", "other")
    assert (moved.store.location, moved.store.collection) == ("http://127.0.0.1:8000", "other")
    assert moved.retriever == spec.retriever
