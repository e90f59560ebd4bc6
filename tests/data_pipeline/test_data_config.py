"""Config files: TOML and JSON load into the dataclasses; every mistake names its field."""

import json

import pytest

from gemmaforge.data import DataConfig, GopherQuality, SafetyFilter
from gemmaforge.errors import ConfigError

TOML = """
output = "out"
tokenizer = "tok.model"
seq_len = 128
mixture = { web = 0.7, code = 0.3 }

[[sources]]
name = "docs"
kind = "web"
paths = ["docs/*.txt"]

[[sources]]
name = "lib"
kind = "code"
paths = ["lib"]
max_docs = 10

[[filters]]
name = "gopher_quality"
kinds = ["web"]
min_words = 20

[[filters]]
name = "safety"
terms = ["forbidden phrase"]

[dedup]
bands = 10
rows = 10
"""


def test_toml_and_json_load_the_same_config(tmp_path):
    (tmp_path / "c.toml").write_text(TOML)
    cfg = DataConfig.load(tmp_path / "c.toml")
    assert cfg.sources[1].max_docs == 10 and cfg.seq_len == 128 and cfg.dedup.bands == 10
    assert isinstance(cfg.filters[0].filter, GopherQuality) and cfg.filters[0].filter.min_words == 20
    assert isinstance(cfg.filters[1].filter, SafetyFilter) and cfg.filters[1].kinds == ["web", "maths", "code"]
    assert cfg.filters[0].applies_to("docs", "web") and not cfg.filters[0].applies_to("lib", "code")
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    again = DataConfig.load(tmp_path / "c.json")
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize("edit, field", [
    ('name = "gopher_quality"', "filters[0].name: unknown filter 'gopher_qualty'"),
    ("min_words = 20", "filters[0].min_wrds: unknown field"),
    ('kind = "web"', "sources[0].kind: must be one of web, maths, code"),
    ("seq_len = 128", "seq_len: expected int"),
    ("max_docs = 10", "sources[1].max_docs: must be positive"),
    ("rows = 10", "dedup.rowz: unknown field"),
    ("mixture = { web = 0.7, code = 0.3 }", "mixture: no weight for kind(s) ['code']"),
    ('tokenizer = "tok.model"', "tokenizer: required field missing"),
    ('paths = ["lib"]', "sources[1]: give either `paths` or `builtin`"),
])
def test_errors_name_the_field(tmp_path, edit, field):
    replacement = {
        'name = "gopher_quality"': 'name = "gopher_qualty"', "min_words = 20": "min_wrds = 20",
        'kind = "web"': 'kind = "wbe"', "seq_len = 128": 'seq_len = "128"', "max_docs = 10": "max_docs = 0",
        "rows = 10": "rowz = 10", "mixture = { web = 0.7, code = 0.3 }": "mixture = { web = 1.0 }",
        'tokenizer = "tok.model"': "", 'paths = ["lib"]': 'paths = ["lib"]\nbuiltin = "stdlib"',
    }[edit]
    (tmp_path / "c.toml").write_text(TOML.replace(edit, replacement, 1))
    with pytest.raises(ConfigError) as e:
        DataConfig.load(tmp_path / "c.toml")
    assert field in str(e.value)


def test_unreadable_or_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="No such file"):
        DataConfig.load(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("output = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        DataConfig.load(tmp_path / "bad.toml")
    (tmp_path / "c.yaml").write_text("output: x")
    with pytest.raises(ConfigError, match=".toml or .json"):
        DataConfig.load(tmp_path / "c.yaml")
    (tmp_path / "q.toml").write_text(TOML + '\n[[filters]]\nname = "quality"\nmodel = "nope.npz"\n')
    with pytest.raises(ConfigError, match=r"filters\[2\] \(quality\): nope.npz"):
        DataConfig.load(tmp_path / "q.toml")
