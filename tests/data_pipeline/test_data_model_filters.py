"""Model-based filters: the trainable quality classifier, the perplexity filter and the safety step."""

import json

import numpy as np
import pytest
import torch

from gemmaforge.data import DataError
from gemmaforge.data.filters import (
    Drop,
    PerplexityFilter,
    QualityClassifier,
    QualityFilter,
    SafetyFilter,
    load_labelled_jsonl,
)


def _code_chunks(files, lines_per_chunk=12):
    """Real code cut into docstring-sized pieces: the 'junk' class for a prose classifier."""
    chunks = []
    for f in files:
        lines = [ln for ln in f.read_text().splitlines() if ln.strip() and not ln.strip().startswith("#")]
        chunks += ["\n".join(lines[i:i + lines_per_chunk]) for i in range(0, len(lines), lines_per_chunk)]
    return chunks


def _npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("name, write, detail", [
    ("data.toml", lambda p: p.write_text('output = "runs/data"\n'), " (not an .npz archive)"),  # was numpy's
    ("w.npy", lambda p: np.save(p, np.zeros(3)), " (not an .npz archive)"),  # allow_pickle advice for both
    ("other.npz", lambda p: _npz(p, weights=np.zeros(3)), ""),
    ("old.npz", lambda p: _npz(p, weights=np.zeros(3), bias=0.0, meta=np.array('{"format": "v0"}')),
     " (format 'v0', expected 'gemmaforge-quality-classifier-v1')"),
])
def test_quality_model_that_is_not_one_says_so(tmp_path, name, write, detail):
    path = tmp_path / name
    write(path)
    with pytest.raises(DataError) as e:
        QualityClassifier.load(path)
    assert str(e.value) == f"{path}: not a quality model written by `gemmaforge data train-quality`{detail}"
    with pytest.raises(DataError, match=r"missing.npz: cannot read the quality model: No such file"):
        QualityClassifier.load(tmp_path / "missing.npz")


def test_quality_classifier_learns_and_round_trips(prose, code_files, tmp_path):
    code = _code_chunks(code_files)
    texts, labels = prose + code, [1] * len(prose) + [0] * len(code)
    rng = np.random.default_rng(0)
    test = set(rng.choice(len(texts), len(texts) // 4, replace=False).tolist())
    train = [i for i in range(len(texts)) if i not in test]
    model = QualityClassifier.train([texts[i] for i in train], [labels[i] for i in train], buckets=1 << 14)
    probs = model.predict_proba([texts[i] for i in sorted(test)])
    acc = ((probs >= 0.5) == np.array([labels[i] for i in sorted(test)])).mean()
    assert acc >= 0.9, acc

    path = tmp_path / "quality.npz"
    model.save(path)
    again = QualityClassifier.load(path)
    np.testing.assert_array_equal(again.predict_proba(texts[:5]), model.predict_proba(texts[:5]))
    verdicts = QualityFilter(model=str(path), threshold=0.5).apply([prose[0], code[0]])
    assert verdicts[0] == prose[0] and verdicts[1].reason == "low_quality"
    assert verdicts[1].detail.startswith("P(keep) 0.")
    assert verdicts[1].detail.endswith(" < 0.5")


def test_quality_inputs_fail_clearly(tmp_path):
    with pytest.raises(DataError, match="labels 0 and 1"):
        QualityClassifier.train(["only one class"], [1])
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a model")
    with pytest.raises(DataError, match="not a quality model"):
        QualityFilter(model=str(bad))
    jl = tmp_path / "ex.jsonl"
    jl.write_text(json.dumps({"text": "a", "label": 1}) + "\n" + json.dumps({"text": "b", "label": 2}) + "\n")
    with pytest.raises(DataError, match=r"ex.jsonl:2"):
        load_labelled_jsonl(jl)


class BigramLM(torch.nn.Module):
    """logits[b, t] depend on token t only: the smallest model with the Gemma call signature."""

    def __init__(self, ids: list[int], vocab: int) -> None:
        super().__init__()
        counts = torch.ones(vocab, vocab)  # add-one smoothed bigram counts of real text
        counts.index_put_((torch.tensor(ids[:-1]), torch.tensor(ids[1:])), torch.ones(len(ids) - 1), accumulate=True)
        self.table = torch.nn.Embedding.from_pretrained(counts.log())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids)


def test_perplexity_filter_drops_gibberish(prose, byte_tokenizer):
    model = BigramLM(byte_tokenizer.encode(" ".join(prose[10:])), byte_tokenizer.vocab_size)
    rng = np.random.default_rng(0)
    gibberish = "".join(chr(c) for c in rng.integers(33, 127, 400))
    f = PerplexityFilter(max_perplexity=30.0, batch_size=2, max_tokens=128, _model=model, _tokenizer=byte_tokenizer)
    ppl = f.perplexities(prose[:3] + [gibberish, ""])
    assert (ppl[:3] < 20).all() and ppl[3] > 50 and np.isnan(ppl[4]), ppl
    # batching and padding do not change a document's score
    alone = PerplexityFilter(batch_size=1, max_tokens=128, _model=model, _tokenizer=byte_tokenizer)
    np.testing.assert_allclose(alone.perplexities(prose[:3]), ppl[:3], rtol=1e-5)
    assert f.apply([prose[0], gibberish]) == [prose[0], Drop("high_perplexity", f"{ppl[3]:.1f} > 30.0")]


def unsafe_scores(texts):
    """A pluggable safety classifier, imported by the filter as 'module:function'."""
    return [1.0 if "forbidden recipe" in t else 0.0 for t in texts]


def test_safety_blocklist_and_pluggable_classifier(prose, tmp_path):
    s = SafetyFilter(terms=["forbidden phrase"])
    assert s.apply([prose[0]]) == [prose[0]]
    assert s.apply([prose[0] + " Watch free PORN here."]) == [Drop("blocklist", "1 >= 1 hits")]
    assert s.apply(["A forbidden phrase appears."]) == [Drop("blocklist", "1 >= 1 hits")]
    assert s.apply(["Sussex and Essex are English counties, and pornographers is not a listed term."]) == \
        ["Sussex and Essex are English counties, and pornographers is not a listed term."]
    lst = tmp_path / "block.txt"
    lst.write_text("# comment\nspamword\n")
    assert SafetyFilter(blocklist=str(lst)).apply(["buy spamword now", "porn"]) == \
        [Drop("blocklist", "1 >= 1 hits"), "porn"]
    c = SafetyFilter(classifier=f"{__name__}:unsafe_scores")
    assert c.apply(["a forbidden recipe", prose[1]]) == [Drop("classifier", "1.000 >= 0.5"), prose[1]]
    with pytest.raises(DataError, match="cannot import"):
        SafetyFilter(classifier="no_such_module_xyz:f")


@pytest.fixture
def one_torch_thread():
    """Tiny matmuls on a shared 2-core machine run ~80x faster single-threaded (no spinning)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_perplexity_with_a_tiny_gemma_in_the_pipeline(corpus, make_config, spm_tokenizer, one_torch_thread):
    """A real (tiny, random) Gemma 3 model: padding-safe batching, and parallel workers agree."""
    import gemmaforge as gf
    from gemmaforge.data import FilterConfig, prepare

    torch.manual_seed(0)
    model = gf.Gemma(gf.GemmaConfig.preset("tiny-gemma3"))
    f = PerplexityFilter(max_perplexity=1e9, batch_size=3, max_tokens=64, _model=model, _tokenizer=spm_tokenizer)
    one = PerplexityFilter(batch_size=1, max_tokens=64, _model=model, _tokenizer=spm_tokenizer)
    texts = [p.read_text() for p in sorted((corpus / "web").glob("0*.txt"))]
    ppl = f.perplexities(texts)
    np.testing.assert_allclose(one.perplexities(texts), ppl, rtol=1e-4)
    assert np.isfinite(ppl).all()

    # In the pipeline the filter object travels to worker processes; 1 and 2 workers agree.
    f = PerplexityFilter(max_perplexity=float(np.median(ppl)), max_tokens=64, _model=model,
                         _tokenizer=spm_tokenizer)
    runs = []
    for workers in (1, 2):
        cfg = make_config(corpus, f"ppl{workers}", workers=workers, decontam={})
        cfg.filters = [FilterConfig("perplexity", f, kinds=["web"])]
        runs.append(prepare(cfg, tokenizer=spm_tokenizer))
    assert runs[0].drops["perplexity"]["high_perplexity"]["count"] >= 10
    assert runs[0].drops == runs[1].drops and runs[0].shards == runs[1].shards


def test_perplexity_tokenizer_larger_than_the_model_fails_when_built(tmp_path, gemma_tokenizer_dir, byte_tokenizer,
                                                                       one_torch_thread):
    """Not mid-run as `IndexError: index out of range in self` from the embedding lookup."""
    import gemmaforge as gf
    from gemmaforge.data import DataConfig
    from gemmaforge.errors import ConfigError

    small = BigramLM([1, 2, 3], vocab=100)
    with pytest.raises(DataError, match=r"tokenizer has 258 ids but the model's vocabulary only 100"):
        PerplexityFilter(_model=small, _tokenizer=byte_tokenizer)
    PerplexityFilter(_model=BigramLM([1, 2, 3], vocab=300), _tokenizer=byte_tokenizer)  # smaller tokenizer: fine

    torch.manual_seed(0)
    model_dir = gf.save_model(gf.Gemma(gf.GemmaConfig.preset("tiny-gemma3")), tmp_path / "tiny")  # 512 ids
    with pytest.raises(ConfigError, match=r"filters\[0\] \(perplexity\): the tokenizer has 600 ids .* only 512"):
        DataConfig.from_dict({"output": str(tmp_path / "out"), "tokenizer": str(gemma_tokenizer_dir),
                              "sources": [{"name": "w", "kind": "web", "paths": [str(tmp_path)]}],
                              "filters": [{"name": "perplexity", "model": str(model_dir),
                                           "tokenizer": str(gemma_tokenizer_dir)}]})
