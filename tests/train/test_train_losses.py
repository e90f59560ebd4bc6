"""The chunked cross-entropy equals full-logits cross-entropy, and needs less memory."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from train_helpers import subprocess_env

import gemmaforge as gf
from gemmaforge.train.losses import IGNORE_INDEX, chunked_cross_entropy


def full_ce(hidden, weight, targets, softcap):
    logits = hidden @ weight.t()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits.reshape(-1, weight.shape[0]), targets.reshape(-1), ignore_index=IGNORE_INDEX)


@pytest.mark.parametrize("softcap", [None, 30.0])
@pytest.mark.parametrize("chunk", [7, 64, 1000])
def test_loss_and_gradients_equal_full_logits(softcap, chunk):
    torch.manual_seed(0)
    hidden = torch.randn(3, 40, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(300, 16, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 300, (3, 40))
    targets[0, :9] = IGNORE_INDEX
    grads = []
    for fn in (full_ce, lambda *a: chunked_cross_entropy(*a, chunk_size=chunk)):
        loss = fn(hidden, weight, targets, softcap)
        (2.5 * loss).backward()  # an upstream scale must reach both gradients
        grads.append((loss.detach(), hidden.grad.clone(), weight.grad.clone()))
        hidden.grad = weight.grad = None
    for ref, got in zip(*grads):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["tiny-gemma-mqa", "tiny-gemma2"])  # tiny-gemma2 soft-caps its logits
def test_equals_model_logits_ce_through_the_whole_model(name):
    torch.manual_seed(0)
    model = gf.Gemma(gf.GemmaConfig.preset(name))
    ids = torch.randint(0, model.config.vocab_size, (2, 17))
    inputs, targets = ids[:, :-1], ids[:, 1:]

    ref = F.cross_entropy(model(inputs).flatten(0, 1).float(), targets.flatten())
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    got = chunked_cross_entropy(model(inputs, logits_at="none"), model.embed.weight, targets,
                                model.config.final_softcap, chunk_size=5)
    got.backward()
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[n], rtol=1e-5, atol=1e-6, msg=n)


def test_no_grad_gives_the_same_loss():
    torch.manual_seed(0)
    hidden, weight = torch.randn(50, 8), torch.randn(100, 8)
    targets = torch.randint(0, 100, (50,))
    with torch.no_grad():
        got = chunked_cross_entropy(hidden, weight, targets, chunk_size=16)
    torch.testing.assert_close(got, full_ce(hidden, weight, targets, None))


PEAK_SCRIPT = """
import sys, torch
from gemmaforge.train.losses import chunked_cross_entropy
import torch.nn.functional as F
torch.manual_seed(0)
V, T, D = 65536, 1024, 32
hidden = torch.randn(T, D, requires_grad=True)
weight = torch.randn(V, D, requires_grad=True)
targets = torch.randint(0, V, (T,))
def status(key):  # kB, from /proc/self/status
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) so imports do not count
before = status("VmRSS:")
if sys.argv[1] == "full":
    loss = F.cross_entropy(hidden @ weight.t(), targets)
else:
    loss = chunked_cross_entropy(hidden, weight, targets, chunk_size=64)
loss.backward()
print(status("VmHWM:") - before)
"""


def test_peak_memory_is_lower_for_a_large_vocabulary():
    """65536 x 1024 float32 logits are 256 MiB; full CE holds several such tensors at once."""
    peak = {}
    for kind in ("full", "chunked"):
        out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, kind], env=subprocess_env(),
                             capture_output=True, text=True, timeout=60, check=True)
        peak[kind] = int(out.stdout.strip()) / 1024  # MiB (/proc reports kB)
    assert peak["full"] > 500, peak  # the full logits really were materialised
    assert peak["chunked"] < peak["full"] / 3, peak
