"""Gopher quality, Gopher repetition and C4 rules on real text and on the junk they target."""

from gemmaforge.data.filters import C4, Drop, GopherQuality, GopherRepetition


def test_gopher_quality_keeps_real_prose(prose):
    verdicts = GopherQuality().apply(prose)
    kept = sum(isinstance(v, str) for v in verdicts)
    assert kept >= 0.9 * len(prose), [v for v in verdicts if isinstance(v, Drop)]


def test_gopher_quality_reasons():
    g = GopherQuality()
    cases = {
        "too_few_words": "The cat sat on the mat and that was that.",
        "short_mean_word_length": " ".join(["a an to of in the be it is"] * 10),
        "hash_symbol_ratio": " ".join(["#tag the word and #more to be"] * 10),
        "too_few_stop_words": " ".join(["Lovely sunny weather today everyone"] * 12),
        "non_alpha_words": " ".join(["123456 234567 345678 456789 567890 the and of"] * 10),
        "ellipsis_lines": "\n".join(["and then the story continues to the end of it ..."] * 10),
    }
    for reason, text in cases.items():
        assert g.apply([text]) == [Drop(reason)], reason


def test_gopher_repetition(prose):
    r = GopherRepetition()
    # A few real docstrings repeat whole phrases (json.load/json.loads) and are rightly dropped.
    assert sum(isinstance(v, str) for v in r.apply(prose)) >= 0.8 * len(prose)
    boiler = "\n".join([prose[0]] + ["Click here to subscribe to our newsletter today!"] * 20)
    assert r.apply([boiler]) == [Drop("duplicate_lines")]
    spam = prose[1] + " " + " ".join(["buy cheap watches online now"] * 40)
    assert isinstance(r.apply([spam])[0], Drop)
    assert r.apply([prose[2] + "\n\n" + prose[2] + "\n\n" + prose[2]]) == [Drop("duplicate_paragraphs")]


def test_c4_removes_lines_and_drops_documents(prose):
    sentences = " ".join(prose[5].split())  # one long line of real sentences
    page = "\n".join([  # noqa: FLY002 (one line per page line reads better)
        "Home | About | Contact",
        sentences,
        "This site uses cookies to improve your experience.",
        "Please enable JavaScript to view the comments.",
        "Real paragraph one has several words in it. It ends well.",
    ])
    out = C4().apply([page])[0]
    assert out == sentences + "\nReal paragraph one has several words in it. It ends well."
    assert C4().apply(["def f(x): {return x}. " * 10]) == [Drop("curly_bracket")]
    assert C4().apply(["Lorem ipsum dolor sit amet. " * 10]) == [Drop("lorem_ipsum")]
    assert C4().apply(["Too short. Two sentences."]) == [Drop("too_few_sentences")]
    assert C4().apply(["See the note.[1] It is clear. A b c. D e f. G h i."])[0] == \
        "See the note. It is clear. A b c. D e f. G h i."
