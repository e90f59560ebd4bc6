"""End to end: real files in, shards and manifest out; parallel runs identical; bad input stops early."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from small_disk import small_disk

from gemmaforge.data import DataError, PackedDataset, prepare


def test_prepare_end_to_end(corpus, make_config, byte_tokenizer, prose, code_files):
    m = prepare(make_config(corpus, "out"), tokenizer=byte_tokenizer)
    counts = {stage: {r: e["count"] for r, e in rs.items()} for stage, rs in m.drops.items()}
    assert counts["dedup"]["exact"] == 1
    # our planted edit, plus json.dump/json.dumps: real near-duplicate docstrings in the stdlib
    near = [e["id"] for e in m.drops["dedup"]["near_duplicate"]["examples"]]
    assert any(i.endswith("edit.txt") for i in near) and counts["dedup"]["near_duplicate"] <= 2
    assert counts["safety"] == {"blocklist": 1}
    assert counts["decontam"] == {"eval_ngram_overlap": 1}
    assert counts["gopher_quality"]["too_few_words"] >= 1
    # counts group by the stable code; each example names the rule and its measured value
    short = [e for e in m.drops["gopher_quality"]["too_few_words"]["examples"] if e["id"].endswith("short.txt")]
    assert short[0]["reason"] == "gopher_quality/too_few_words (4 < 50)"
    assert m.drops["safety"]["blocklist"]["examples"][0]["reason"] == "safety/blocklist (1 >= 1 hits)"
    assert m.drops["decontam"]["eval_ngram_overlap"]["examples"][0]["reason"] == \
        "decontam/eval_ngram_overlap (2 >= 1 n-grams)"
    assert m.drops["dedup"]["exact"]["examples"][0]["reason"] == "dedup/exact"
    assert m.contaminated == [{"id": m.contaminated[0]["id"], "ngrams": 2, "eval_items": ["hellaswag/2", "mmlu/7"]}]
    assert m.contaminated[0]["id"].startswith("more:") and m.contaminated[0]["id"].endswith(":11")
    assert m.drops["dedup"]["exact"]["examples"][0]["duplicate_of"].endswith("00.txt")
    assert m.sources["code"].documents_kept == len(code_files) and m.sources["web"].documents_read == 34

    ds = PackedDataset(corpus / "out")
    assert len(ds) == m.num_blocks == (m.total_tokens - 1) // 64
    stream = ds.tokens(0, m.total_tokens)
    assert stream[0] == byte_tokenizer.bos_id and stream[-1] == byte_tokenizer.eos_id
    docs = bytes(int(t) for t in stream if t < 256).decode()  # BOS/EOS separate the documents
    assert prose[3] in docs and prose[40] not in docs and code_files[0].read_text() in docs
    manifest = json.loads((corpus / "out" / "manifest.json").read_text())
    assert manifest["total_tokens"] == m.total_tokens and manifest["config"]["seq_len"] == 64
    assert sorted(p.name for p in corpus.iterdir() if p.name.startswith(".")) == []  # no temp dirs left


def test_parallel_run_is_byte_identical(corpus, make_config, spm_tokenizer):
    one = prepare(make_config(corpus, "one", workers=1), tokenizer=spm_tokenizer)
    two = prepare(make_config(corpus, "two", workers=2), tokenizer=spm_tokenizer)
    assert [s["sha256"] for s in one.shards] == [s["sha256"] for s in two.shards]
    assert len(one.shards) > 1
    for s in one.shards:
        assert (corpus / "one" / s["file"]).read_bytes() == (corpus / "two" / s["file"]).read_bytes()


def test_mixture_weights_shape_the_output(corpus, make_config, byte_tokenizer):
    m = prepare(make_config(corpus, "mix", mixture={"web": 0.5, "code": 0.5}), tokenizer=byte_tokenizer)
    web, code = m.mixture["web"], m.mixture["code"]
    assert web["selected_tokens"] == web["available_tokens"]  # the scarcer kind is used once
    assert code["target_tokens"] == pytest.approx(web["selected_tokens"], abs=1)  # and sets the total
    assert code["selected_tokens"] >= code["target_tokens"]  # whole documents: may overshoot by one
    assert m.sources["code"].tokens_written < m.sources["code"].tokens_kept  # code is larger: downsampled


@pytest.mark.parametrize("change, message", [
    ({"sources": [{"name": "x", "kind": "web", "paths": ["/no/such/dir"]}]}, r"sources\[0\] \(x\): no such file"),
    ({"sources": [{"name": "x", "kind": "web", "paths": ["/no/such/*.txt"]}]}, "matches no file"),
    ({"decontam": {"ngrams": "/no/such/ngrams.json"}}, "eval n-gram export"),
    ({"filters": [{"name": "gopher_quality", "min_words": 10**6}]}, "no document is left after filtering"),
])
def test_bad_input_stops_with_one_message_and_no_output(corpus, make_config, byte_tokenizer, change, message):
    cfg = make_config(corpus, "bad", **change)
    with pytest.raises(DataError, match=message):
        prepare(cfg, tokenizer=byte_tokenizer)
    assert not (corpus / "bad").exists()
    assert not [p for p in corpus.iterdir() if p.name.startswith(".")]


def test_empty_corpus_message_lists_the_drops(corpus, make_config, byte_tokenizer):
    cfg = make_config(corpus, "bad", filters=[{"name": "gopher_quality", "min_words": 10**6}])
    with pytest.raises(DataError) as e:
        prepare(cfg, tokenizer=byte_tokenizer)
    assert "(59 read; dropped: gopher_quality/too_few_words: 59)" in str(e.value)
    assert "loosen the filters" in str(e.value)


def test_corrupt_source_and_existing_output(corpus, make_config, byte_tokenizer):
    (corpus / "broken.jsonl").write_text('{"text": "fine"}\n{"text": oops}\n')
    cfg = make_config(corpus, "bad", sources=[{"name": "b", "kind": "web", "paths": [str(corpus / "broken.jsonl")]}])
    with pytest.raises(DataError, match=r"broken.jsonl:2: not valid JSON"):
        prepare(cfg, tokenizer=byte_tokenizer)
    (corpus / "taken").mkdir()
    (corpus / "taken" / "keep.txt").write_text("user data")
    with pytest.raises(DataError, match="already exists"):
        prepare(make_config(corpus, "taken"), tokenizer=byte_tokenizer)
    assert (corpus / "taken" / "keep.txt").exists()
    prepare(make_config(corpus, "taken", overwrite=True), tokenizer=byte_tokenizer)
    assert not (corpus / "taken" / "keep.txt").exists() and (corpus / "taken" / "manifest.json").exists()


def test_non_utf8_text_source_says_to_convert_it(corpus, make_config, byte_tokenizer):
    (corpus / "latin.txt").write_bytes("Caf\u00e9 au lait, cr\u00e8me br\u00fbl\u00e9e.".encode("latin-1"))
    cfg = make_config(corpus, "out", sources=[{"name": "l", "kind": "web", "paths": [str(corpus / "latin.txt")]}])
    with pytest.raises(DataError) as e:
        prepare(cfg, tokenizer=byte_tokenizer)
    assert str(e.value) == (f"{corpus / 'latin.txt'}: not UTF-8 text (byte 3); convert it to UTF-8 "
                            "(e.g. iconv -f latin1 -t utf-8)")


def test_parquet_source(corpus, make_config, byte_tokenizer, prose):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": prose[45:55]}), corpus / "web.parquet")
    cfg = make_config(corpus, "pq", sources=[{"name": "pq", "kind": "web", "paths": [str(corpus / "web.parquet")],
                                          "text_field": "body"}], decontam={})
    m = prepare(cfg, tokenizer=byte_tokenizer)
    assert m.sources["pq"].documents_read == 10 and m.sources["pq"].documents_kept >= 8
    bad = make_config(corpus, "pq2", sources=[{"name": "pq", "kind": "web", "paths": [str(corpus / "web.parquet")]}])
    with pytest.raises(DataError, match="no column 'text'"):
        prepare(bad, tokenizer=byte_tokenizer)


class NeverCalledTokenizer:
    """Fails the test if any document gets as far as tokenising."""

    bos_id, eos_id = 0, 1

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        raise AssertionError("the output check must run before any document is processed")


@pytest.mark.parametrize("output, message", [
    ("file.txt/out", r"output .*file.txt/out: cannot create .*file.txt: "),
    ("/proc/gemmaforge-out", r"output /proc/gemmaforge-out: cannot create /proc/\.gemmaforge-out\.tmp-\d+: "),
])
def test_uncreatable_output_fails_before_any_work(corpus, make_config, output, message):
    """os.access says yes to root even on /proc; only creating the directory tells."""
    if output.startswith("/proc") and not Path("/proc/self").exists():
        pytest.skip("needs Linux /proc")
    (corpus / "file.txt").write_text("a regular file")
    out = output if output.startswith("/") else str(corpus / output)
    with pytest.raises(DataError, match=message):
        prepare(make_config(corpus, out), tokenizer=NeverCalledTokenizer())
    assert not [p for p in corpus.iterdir() if p.name.startswith(".")]


def test_a_full_disk_is_one_clear_error_and_leaves_nothing(corpus, make_config, byte_tokenizer, tmp_path):
    with small_disk(tmp_path / "disk", "16k") as disk:
        with pytest.raises(DataError, match=r"output .*/disk/out: cannot write.*: No space left on device"):
            prepare(make_config(corpus, str(disk / "out")), tokenizer=byte_tokenizer)
        assert list(disk.iterdir()) == []


def test_stale_temp_dirs_of_killed_runs_are_removed(corpus, make_config, byte_tokenizer):
    """A run killed while writing leaves .NAME.tmp-PID; the next run removes it unless PID is alive."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead, live = corpus / f".out.tmp-{gone.pid}", corpus / f".out.tmp-{os.getppid()}"
    other = corpus / f".other.tmp-{gone.pid}"  # another output's: not ours to judge
    for d in (dead, live, other):
        d.mkdir()
        (d / "tokens-00000.bin").write_bytes(b"\0" * 8)
    prepare(make_config(corpus, "out"), tokenizer=byte_tokenizer)
    assert not dead.exists() and live.exists() and other.exists()


def test_mixture_kind_emptied_by_filters_stops_the_run(corpus, make_config):
    """Without the check web's 0.7 would be renormalised away: exit 0 and an all-code output."""
    cfg = make_config(corpus, "out", mixture={"web": 0.7, "code": 0.3},
                      filters=[{"name": "gopher_quality", "kinds": ["web"], "min_words": 10**6}])
    with pytest.raises(DataError) as e:
        prepare(cfg, tokenizer=NeverCalledTokenizer())  # stops before tokenising
    assert str(e.value) == ("mixture.web: weight 0.7 but no web document survived filtering (dropped: "
                            "gopher_quality/too_few_words: 49); loosen its filters or give it weight 0")
    assert not (corpus / "out").exists() and not [p for p in corpus.iterdir() if p.name.startswith(".")]


CTRL_C_CHILD = """
import os, signal, time
# As in a terminal. A non-interactive shell starts background jobs with SIGINT ignored, and Python
# then never raises KeyboardInterrupt: that would test the shell, not the pool.
signal.signal(signal.SIGINT, signal.default_int_handler)
from gemmaforge.data.parallel import LocalExecutor
def slow(ctx, batch):
    os.write(1, b"tick\\n")  # one write: the two workers' lines never interleave
    time.sleep(0.05)
    return batch
LocalExecutor(2, 1, progress=False).map(slow, None, list(range(2000)), "filter")
"""


def test_ctrl_c_stops_parallel_work_without_worker_tracebacks():
    """Ctrl-C signals the whole process group; workers leave it to the parent, which ends the pool."""
    p = subprocess.Popen([sys.executable, "-c", CTRL_C_CHILD], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True, text=True)
    for _ in range(4):  # both workers are running tasks
        assert p.stdout.readline() == "tick\n"
    os.killpg(p.pid, signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    assert p.returncode != 0 and out.endswith("\nKeyboardInterrupt\n"), out  # the parent's, from imap
    assert "ForkPoolWorker" not in out, out  # each worker used to print its own traceback
