"""Gopher quality, Gopher repetition and C4 rules on real text and on the junk they target."""

from gemmaforge.data.filters import C4, Drop, GopherQuality, GopherRepetition
from gemmaforge.data.filters.sentences import sentences


def test_gopher_quality_keeps_real_prose(prose):
    verdicts = GopherQuality().apply(prose)
    kept = sum(isinstance(v, str) for v in verdicts)
    assert kept >= 0.9 * len(prose), [v for v in verdicts if isinstance(v, Drop)]


def test_gopher_quality_reasons_name_the_value_and_threshold():
    g = GopherQuality()
    cases = {
        Drop("too_few_words", "10 < 50"): "The cat sat on the mat and that was that.",
        Drop("short_mean_word_length", "2 < 3"): " ".join(["a an to of in the be it is"] * 10),
        Drop("hash_symbol_ratio", "0.2857 > 0.1"): " ".join(["#tag the word and #more to be"] * 10),
        Drop("non_alpha_words", "0.375 < 0.8"): " ".join(["123456 234567 345678 456789 567890 the and of"] * 10),
        Drop("ellipsis_lines", "1 > 0.3"): "\n".join(["and then the story continues to the end of it ..."] * 10),
        Drop("bullet_lines", "1 > 0.9"): "\n".join(["* item with the list and more words here"] * 10),
        Drop("too_few_stop_words", "0 < 2 distinct"): " ".join(["Lovely sunny weather today everyone"] * 12),
    }
    for drop, text in cases.items():
        assert g.apply([text]) == [drop], drop


def test_gopher_stop_words_must_be_two_distinct_ones():
    # "at least two of the following English words" (Rae et al. 2021, A.1.1): a repeated "the" is one word.
    only_the = " ".join(["The weather looks lovely today in the valley"] * 8)
    assert GopherQuality().apply([only_the]) == [Drop("too_few_stop_words", "1 < 2 distinct: the")]
    two = only_the + " Bread and butter."
    assert GopherQuality().apply([two]) == [two]


def test_gopher_repetition(prose):
    r = GopherRepetition()
    # A few real docstrings repeat whole phrases (json.load/json.loads) and are rightly dropped.
    assert sum(isinstance(v, str) for v in r.apply(prose)) >= 0.8 * len(prose)
    boiler = "\n".join([prose[0]] + ["Click here to subscribe to our newsletter today!"] * 20)
    assert r.apply([boiler])[0].reason == "duplicate_lines"
    value, limit = r.apply([boiler])[0].detail.split(" > ")
    assert float(value) > 0.3 and limit == "0.3"
    spam = prose[1] + " " + " ".join(["buy cheap watches online now"] * 40)
    assert isinstance(r.apply([spam])[0], Drop)
    tripled = prose[2] + "\n\n" + prose[2] + "\n\n" + prose[2]
    assert r.apply([tripled]) == [Drop("duplicate_paragraphs", "0.6667 > 0.3")]
    assert r.apply([tripled.replace("\n", "\r\n")]) == [Drop("duplicate_paragraphs", "0.6667 > 0.3")]


def test_sentence_splitter_handles_abbreviations_initials_and_closing_marks():
    assert len(sentences("J. Toms met Mr. Smith on Jan. 3 at the U.S. embassy. They talked.")) == 2
    assert sentences('He asked "Why?" She left (it was late.) Then it rained.') == [
        'He asked "Why?"', "She left (it was late.)", "Then it rained."]
    assert sentences("“Hello there.” Bye now.") == ["“Hello there.”", "Bye now."]


def test_c4_removes_lines_and_drops_documents(prose):
    sentences_line = " ".join(prose[5].split())  # one long line of real sentences
    page = "\n".join([  # noqa: FLY002 (one line per page line reads better)
        "Home | About | Contact",
        sentences_line,
        "This site uses cookies to improve your experience.",
        "Please enable JavaScript to view the comments.",
        "Real paragraph one has several words in it. It ends well.",
        "Four words end here.",
    ])
    out = C4().apply([page])[0]
    assert out == sentences_line + "\nReal paragraph one has several words in it. It ends well."
    assert C4().apply(["Some text.\ndef f(x): {return x}. " * 10]) == [Drop("curly_bracket", "line 2")]
    assert C4().apply(["Lorem ipsum dolor sit amet. " * 10]) == [Drop("lorem_ipsum", "line 1")]
    assert C4().apply(["This line has one sentence.\nAnd this line has one more."]) == \
        [Drop("too_few_sentences", "2 < 3")]
    assert C4().apply(["See the note here.[1] It is clear to all. A b c d e."])[0] == \
        "See the note here. It is clear to all. A b c d e."


def test_c4_counts_sentences_as_punkt_does():
    # initials and abbreviations do not end sentences: 2, not 6 (the old regular expression's count)
    initials = "The poet J. Toms and Mr. Smith met in St. Louis on Jan. 5 at noon. They talked for hours."
    assert C4().apply([initials]) == [Drop("too_few_sentences", "2 < 3")]
    # sentences closed by a quote or a bracket count: 3
    closed = 'He asked the man "Why did you go?" She said it was late (it was late.) Then the rain came down.'
    assert C4().apply([closed]) == [closed]
