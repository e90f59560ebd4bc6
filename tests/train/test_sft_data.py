"""SFT data: the loss mask token by token, packing without cross-contamination, bad input."""

from __future__ import annotations

import pytest
import torch
from sft_helpers import arithmetic_chats, small_tokenizer, tiny_model, write_jsonl

import gemmaforge as gf
from gemmaforge.train.errors import TrainError
from gemmaforge.train.lora import LoraSettings, apply_lora
from gemmaforge.train.losses import IGNORE_INDEX
from gemmaforge.train.sft import SftObjective
from gemmaforge.train.sft_data import PAD_SEGMENT, Example, pack, read_examples, trim_padding

CHAT = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! Yes."},
        {"role": "user", "content": "More?"}, {"role": "model", "content": "No."}]


@pytest.fixture(scope="module")
def tok():
    """The real Gemma 3 tokenizer (for the mask, piece by piece)."""
    return gf.load_tokenizer("gemma3-270m")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return small_tokenizer(tmp_path_factory.mktemp("tok"))


def test_mask_trains_every_model_turn_and_its_end_of_turn_never_the_header(tok):
    ids, mask = tok.render_chat(CHAT)
    assert [(tok.id_to_piece(i), m) for i, m in zip(ids, mask)] == [
        ("<bos>", 0), ("<start_of_turn>", 0), ("user", 0), ("\n", 0), ("Hi", 0), ("▁there", 0),
        ("<end_of_turn>", 0), ("\n", 0),
        ("<start_of_turn>", 0), ("model", 0), ("\n", 0),
        ("Hello", 1), ("!", 1), ("▁Yes", 1), (".", 1), ("<end_of_turn>", 1), ("\n", 0),
        ("<start_of_turn>", 0), ("user", 0), ("\n", 0), ("More", 0), ("?", 0), ("<end_of_turn>", 0), ("\n", 0),
        ("<start_of_turn>", 0), ("model", 0), ("\n", 0),
        ("No", 1), (".", 1), ("<end_of_turn>", 1), ("\n", 0)]
    assert ids[mask.index(1) - 3:mask.index(1)] == [105, tok.piece_to_id("model"), tok.piece_to_id("\n")]
    assert [i for i, m in zip(ids, mask) if m].count(106) == 2  # both turns learn to stop


def test_labels_are_the_next_trained_token(tok, tmp_path):
    """Row labels: position t predicts token t+1 where that token is trained, else -100."""
    path = write_jsonl(tmp_path / "a.jsonl", [{"messages": CHAT}])
    ex = read_examples(path, tok)[0]
    rows, stats = pack([ex], 64)
    ids, labels, positions, segments = rows[0]
    n = len(ex.ids) - 1
    assert ids[:n].tolist() == ex.ids[:-1] and positions[:n].tolist() == list(range(n))
    assert labels[:n].tolist() == [t if m else IGNORE_INDEX for t, m in zip(ex.ids[1:], ex.mask[1:])]
    assert (labels[n:] == IGNORE_INDEX).all() and (segments[n:] == PAD_SEGMENT).all()
    assert stats.trained_tokens == sum(ex.mask) == 8


@pytest.mark.parametrize("family", [3, 2])
def test_packed_rows_compute_what_each_conversation_computes_alone(small, tmp_path, family):
    """Per-token losses of a packed row equal those of each conversation run alone (float32);
    the sliding window (8) is shorter than the conversations, Gemma 2 soft-caps its attention."""
    path = write_jsonl(tmp_path / "c.jsonl", arithmetic_chats(6))
    examples = read_examples(path, small)
    rows, stats = pack(examples, 160, packed=True, seed=0)
    assert stats.rows < len(examples)  # really packed
    assert rows[:, 3].max() >= 2  # a row of three conversations
    model = tiny_model(family=family).eval()
    with torch.no_grad():
        ids, labels, positions, segments = rows.unbind(1)
        logp = torch.log_softmax(model(ids, positions=positions, segment_ids=segments), -1)
        alone = {}
        for ex in examples:
            x = torch.tensor([ex.ids[:-1]])
            alone[tuple(ex.ids[:-1])] = torch.log_softmax(model(x), -1)[0]
    compared = 0
    for r in range(len(rows)):
        for s in range(int(segments[r].max()) + 1):
            at = (segments[r] == s).nonzero().squeeze(1)
            want = alone[tuple(ids[r, at].tolist())]
            got = logp[r, at]
            trained = labels[r, at] != IGNORE_INDEX
            per_token_got = -got[trained].gather(1, labels[r, at][trained][:, None])
            per_token_want = -want[trained].gather(1, labels[r, at][trained][:, None])
            assert torch.allclose(per_token_got, per_token_want, atol=1e-5, rtol=0)
            compared += int(trained.sum())
    assert compared == stats.trained_tokens
    loss, metrics = SftObjective().loss(model, rows)  # the mean over exactly those tokens
    all_losses = -logp[labels != IGNORE_INDEX].gather(1, labels[labels != IGNORE_INDEX][:, None])
    assert loss.item() == pytest.approx(all_losses.mean().item(), abs=1e-5)
    assert metrics["tokens"] == SftObjective().tokens(rows) == stats.trained_tokens


def test_packing_without_pack_gives_one_conversation_per_row(small, tmp_path):
    examples = read_examples(write_jsonl(tmp_path / "c.jsonl", arithmetic_chats(5)), small)
    rows, stats = pack(examples, 64, packed=False)
    assert stats.rows == 5 and (rows[:, 3].amax(1) == 0).all()


def test_loss_on_trimmed_rows_and_trained_positions_equals_full_logits_everywhere(small, tmp_path):
    """SftObjective cuts trailing padding and projects only trained positions; loss and LoRA
    gradients must equal plain cross-entropy over full logits of the untrimmed rows."""
    examples = read_examples(write_jsonl(tmp_path / "c.jsonl", arithmetic_chats(4)), small)
    rows, _ = pack(examples, 96, packed=False)
    longest = max(len(e.ids) - 1 for e in examples)
    cut = trim_padding(rows)
    assert cut.shape[-1] == longest < rows.shape[-1] and torch.equal(cut, rows[..., :longest])
    assert trim_padding(rows[..., :longest]).shape[-1] == longest  # nothing to cut: unchanged

    def grads(loss_fn):
        torch.manual_seed(0)
        model = tiny_model()
        apply_lora(model, LoraSettings(("q_proj", "down_proj"), 4, 8.0))
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                torch.nn.init.normal_(p, std=0.1)  # non-zero, so every adapter's gradient is exercised
        loss = loss_fn(model)
        loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}

    def reference(model):
        ids, labels, positions, segments = rows.unbind(1)
        logits = model(ids, positions=positions, segment_ids=segments)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)

    want_loss, want = grads(reference)
    got_loss, got = grads(lambda m: SftObjective().loss(m, rows)[0])
    assert got_loss.item() == pytest.approx(want_loss.item(), abs=1e-5)
    for name in want:
        assert torch.allclose(got[name], want[name], atol=1e-5, rtol=1e-4), name


def test_long_conversations_are_cut_and_counted():
    long = Example(list(range(2, 40)), [0] * 30 + [1] * 8, "x:1")
    prompt_only_fits = Example(list(range(2, 40)), [0] * 36 + [1] * 2, "x:2")
    rows, stats = pack([long, prompt_only_fits], 32)
    assert stats.truncated == 2 and stats.dropped == 1 and stats.rows == 1
    assert stats.trained_tokens == 3  # positions 29-31 predict trained tokens 30-32; 33-37 fell past the cut


@pytest.mark.parametrize("line, message", [
    ('{"messages": [{"role": "user", "content": "hi"}', r"bad\.jsonl:2: not JSON Lines"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', r"bad\.jsonl:2: no model turn"),
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}',
     r"bad\.jsonl:2: message 1: unknown role 'robot'"),
    ('{"prompt": "hi", "response": "  "}', r"bad\.jsonl:2: message 1: empty model response"),
    ('{"question": "hi"}', r"bad\.jsonl:2: expected 'messages', or 'prompt' and 'response'"),
    ('[1, 2]', r"bad\.jsonl:2: expected a JSON object"),
])
def test_bad_lines_name_file_and_line(tok, tmp_path, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok", "response": "fine"}, line])
    with pytest.raises(TrainError, match=message):
        read_examples(path, tok)


def test_binary_or_empty_files_are_one_line(tok, tmp_path):
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TrainError, match=r"bin\.jsonl: not JSON Lines \(not UTF-8"):
        read_examples(tmp_path / "bin.jsonl", tok)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(TrainError, match=r"empty\.jsonl: holds no examples"):
        read_examples(tmp_path / "empty.jsonl", tok)
