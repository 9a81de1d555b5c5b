"""Data tests: label sets, split sizes, determinism, and no leakage between splits."""

from __future__ import annotations

import pytest

from finsentry.schema import SENTIMENTS, TOPICS
from finsentry.text import normalise_text
from models.data import IGNORE, DataError, clean, load_phrasebank
from models.splits import EVAL_SETS, Splits, build_splits

pytestmark = pytest.mark.unit


def test_label_sets_cover_exactly_the_schema_labels(splits: Splits) -> None:
    sentiment = {e.sentiment for e in splits.train if e.sentiment != IGNORE}
    topic = {e.topic for e in splits.train if e.topic != IGNORE}
    assert sentiment == set(range(len(SENTIMENTS)))
    assert topic == set(range(len(TOPICS)))
    assert all((e.sentiment == IGNORE) != (e.topic == IGNORE) for e in splits.train)


def test_no_test_or_validation_text_occurs_in_training(splits: Splits) -> None:
    train = {normalise_text(e.text) for e in splits.train}
    for name in EVAL_SETS:
        assert not {normalise_text(e.text) for e in splits.test[name]} & train, name
        assert not {normalise_text(e.text) for e in splits.validation[name]} & train, name
        validation = {normalise_text(e.text) for e in splits.validation[name]}
        assert not {normalise_text(e.text) for e in splits.test[name]} & validation, name


def test_no_phrasebank_test_sentence_is_trained_on_at_any_agreement_level(splits: Splits) -> None:
    every_level = {normalise_text(e.text) for e in load_phrasebank()}
    trained = {normalise_text(e.text) for e in splits.train if e.dataset == "phrasebank"}
    tested = {normalise_text(e.text) for e in splits.test["phrasebank"]}
    assert tested <= every_level
    assert not tested & trained


def test_split_sizes_are_the_documented_ones(splits: Splits) -> None:
    assert splits.counts() == {
        "phrasebank": {"train": 3870, "validation": 483, "test": 483, "leaks_removed": 0},
        "phrasebank_allagree": {"train": 3870, "validation": 226, "test": 230, "leaks_removed": 0},
        "twitter_sentiment": {"train": 8589, "validation": 941, "test": 2349, "leaks_removed": 39},
        "twitter_topic": {"train": 15291, "validation": 1414, "test": 3438, "leaks_removed": 679},
    }


def test_allagree_test_is_the_allagree_part_of_the_whole_test(splits: Splits) -> None:
    allagree = splits.test["phrasebank_allagree"]
    assert allagree and all(e.agreement == "AllAgree" for e in allagree)
    assert {e.text for e in allagree} <= {e.text for e in splits.test["phrasebank"]}


def test_splits_are_deterministic_for_a_seed_and_change_with_it() -> None:
    first, again, other = build_splits(), build_splits(), build_splits(seed=1)
    assert [e.text for e in first.train[:50]] == [e.text for e in again.train[:50]]
    assert {e.text for e in first.test["phrasebank"]} != {e.text for e in other.test["phrasebank"]}


def test_normalise_folds_case_urls_and_whitespace() -> None:
    assert normalise_text("Apple  UP 5%\nhttps://t.co/Ab1 ") == normalise_text(
        "apple up 5% http://x.co/zz"
    )


def test_clean_keeps_words_and_drops_links_and_entities() -> None:
    assert clean("AT&amp;T beats   https://t.co/x ") == "AT&T beats"


def test_malformed_phrasebank_line_is_reported_with_file_and_line(tmp_path) -> None:
    folder = tmp_path / "financial_phrasebank"
    folder.mkdir()
    for level in ("50Agree", "66Agree", "75Agree", "AllAgree"):
        (folder / f"Sentences_{level}.txt").write_text("Fine .@neutral\nno label here\n", "latin-1")
    with pytest.raises(DataError, match=r"Sentences_50Agree.txt:2"):
        load_phrasebank(tmp_path)
