"""The head: ROC AUC against scikit-learn's, a fit that separates what is separable, and its file."""

import pytest
import torch

from gemmaforge.safety import head as headlib


def test_roc_auc_matches_sklearn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(300, generator=g) < 0.3).float()
    scores = (torch.rand(300, generator=g) + 0.4 * y).mul(10).round() / 10  # many ties
    assert headlib.roc_auc(scores, y) == pytest.approx(metrics.roc_auc_score(y.numpy(), scores.numpy()), abs=1e-12)
    with pytest.raises(ValueError, match="both classes"):
        headlib.roc_auc(scores, torch.ones(300))


def test_fit_learns_a_linear_rule_and_round_trips(tmp_path):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 8, generator=g) * torch.arange(1, 9) + 5.0  # scaled and shifted features
    y = ((x[:, 2] - 5.0) - 0.5 * (x[:, 5] - 5.0) > 0).float()
    head = headlib.fit(x[:300], y[:300], l2=1e-3)
    assert headlib.roc_auc(head.predict(x[300:]), y[300:]) > 0.98
    headlib.save(head, tmp_path, threshold=0.4, meta={"spec": {"layer": 2}})
    loaded, meta = headlib.load(tmp_path)
    assert meta == {"spec": {"layer": 2}, "threshold": 0.4}
    torch.testing.assert_close(loaded.predict(x), head.predict(x))


def test_strong_l2_shrinks_towards_the_prior():
    x = torch.randn(200, 4, generator=torch.Generator().manual_seed(2))
    y = (x[:, 0] > 0).float()
    weak, strong = headlib.fit(x, y, 1e-4), headlib.fit(x, y, 1e3)
    assert strong.weight.abs().sum() < 0.05 * weak.weight.abs().sum()
