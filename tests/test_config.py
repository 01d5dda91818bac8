"""Config loading: YAML -> dataclass with dotted overrides, validated with one-line errors."""
from __future__ import annotations

import pytest

from uae_data.core.config import ConfigError, apply_overrides, load_config, validate_manifest
from uae_data.corpus_config import CorpusConfig

pytestmark = pytest.mark.unit


def write(tmp_path, text, name="m.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_manifest_loads_nested_sections_and_defaults(tmp_path):
    p = write(tmp_path, "kind: corpus\nseed: 3\nsource: {name: scenes, n: 50}\n")
    cfg = load_config(CorpusConfig, p, kind="corpus")
    assert cfg.seed == 3 and cfg.source.n == 50 and cfg.source.max_objects == 6 and cfg.captioner.name == "scene"


def test_dotted_overrides_parse_values_as_yaml(tmp_path):
    p = write(tmp_path, "kind: corpus\n")
    cfg = load_config(CorpusConfig, p, ["source.n=7", "image_size=32", "name=x y"], kind="corpus")
    assert cfg.source.n == 7 and cfg.image_size == 32 and cfg.name == "x y"


def test_unknown_key_names_file_and_dotted_field(tmp_path):
    p = write(tmp_path, "kind: corpus\nsource: {name: scenes, nn: 5}\n")
    with pytest.raises(ConfigError, match=r"m\.yaml: unknown key 'source\.nn'"):
        load_config(CorpusConfig, p, kind="corpus")


def test_wrong_type_names_field(tmp_path):
    p = write(tmp_path, "kind: corpus\nimage_size: big\n")
    with pytest.raises(ConfigError, match=r"m\.yaml: image_size: expected an integer, got 'big'"):
        load_config(CorpusConfig, p, kind="corpus")


def test_bool_is_not_accepted_as_int(tmp_path):
    with pytest.raises(ConfigError, match="shard_size"):
        load_config(CorpusConfig, None, ["shard_size=true"])


def test_bad_yaml_is_one_line_with_line_number(tmp_path):
    p = write(tmp_path, "kind: corpus\nsource: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_config(CorpusConfig, p)
    assert "invalid YAML" in str(e.value) and "\n" not in str(e.value) and "m.yaml" in str(e.value)


def test_validate_hook_rejects_out_of_range_values():
    with pytest.raises(ConfigError, match="min_objects"):
        load_config(CorpusConfig, None, ["source.min_objects=5", "source.max_objects=2"])


def test_wrong_kind_is_refused(tmp_path):
    p = write(tmp_path, "kind: geneval\n")
    with pytest.raises(ConfigError, match="needs a 'corpus' manifest"):
        load_config(CorpusConfig, p, kind="corpus")


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["oops"])


def test_validate_manifest_requires_known_kind(tmp_path):
    with pytest.raises(ConfigError, match="missing required key 'kind'"):
        validate_manifest(write(tmp_path, "seed: 1\n"))
    with pytest.raises(ConfigError, match="unknown kind 'nope'"):
        validate_manifest(write(tmp_path, "kind: nope\n", "n.yaml"))


@pytest.mark.unit
def test_check_options_takes_names_and_types_from_the_constructor_it_feeds():
    from dataclasses import dataclass

    from uae_data.core.config import check_options

    def build(width: int, mode: str = "a", *args, scale: float = 1.0, **kw) -> None: ...

    @dataclass
    class Extra:
        depth: int = 2

    assert check_options("opts", {"width": 3, "scale": 2, "depth": 4}, build, Extra) == {"width": 3, "scale": 2.0,
                                                                                         "depth": 4}
    with pytest.raises(ConfigError, match=r"unknown key 'opts\.widht' \(known: depth, mode, scale, width\)"):
        check_options("opts", {"widht": 3}, build, Extra)
    with pytest.raises(ConfigError, match=r"opts\.width: expected an integer"):
        check_options("opts", {"width": "3"}, build)
    with pytest.raises(ConfigError, match=r"unknown key 'opts\.mode'"):
        check_options("opts", {"mode": "b"}, build, exclude=("mode",))  # set by the caller, not the manifest
