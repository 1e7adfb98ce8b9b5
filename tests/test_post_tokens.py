"""Raw posts are tokenized as the benchmark files are (mner.post_tokens), checked on the real benchmark posts."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from mner.config import DatasetConfig
from mner.formats import read_conll
from mner.post_tokens import STYLES, join_tokens, rebuild_post, style_for_dataset, tokenize_post, training_style
from tests.char_corpus import write_char_corpus
from tests.conftest import SAMPLE, SHARED_DATA

# lowest share of posts whose tokens agree exactly, per dataset; measured 99.88-100% (Twitter-2017) and
# 90.4-91.3% (Twitter-2015, whose files keep truncated URLs such as "http:…" and some "word!" whole)
AGREEMENT_FLOOR = {"twitter2017": 0.995, "twitter2015": 0.89}


def _texts(tokens: list[str]) -> list[str]:
    return [t.text for t in tokenize_post(rebuild_post(tokens)[0])]


def test_a_raw_post_splits_as_the_twitter2017_files_do() -> None:
    post = "RT @jehnnybgoode: What a day for baseball! It's the 5th #NewYorkMets win, 10,000 fans :) ❤️ (May 21, 2016)"
    tokens = tokenize_post(post)
    assert [t.text for t in tokens] == [
        "RT", "@", "jehnnybgoode", ":", "What", "a", "day", "for", "baseball", "!", "It", "'", "s", "the", "5", "th",
        "#", "NewYorkMets", "win", ",", "10,000", "fans", ":)", "❤", "\ufe0f", "(", "May", "21,", "2016", ")"]
    assert all(post[t.start:t.end] == t.text for t in tokens)  # character spans point into the post
    assert [t.text for t in tokenize_post("see https://t.co/x1Y?a=b now")] == ["see", "https://t.co/x1Y?a=b", "now"]


def test_twitter2015_keeps_mentions_hashtags_and_ordinals_whole() -> None:
    assert [t.text for t in tokenize_post("@user loves #NYC on the 8th, it's low-cost", "twitter2015")] == [
        "@user", "loves", "#NYC", "on", "the", "8th", ",", "it", "'", "s", "low-cost"]
    assert style_for_dataset("twitter2015-sample") == "twitter2015" and style_for_dataset("twitter2017") == "twitter2017"


def test_the_chars_convention_makes_every_character_a_token_latin_and_digits_included() -> None:
    post = "李娜 在NBA打球，\u30002008年到了北京。"  # an ASCII and an ideographic space
    tokens = tokenize_post(post, "chars")
    assert [t.text for t in tokens] == ["李", "娜", "在", "N", "B", "A", "打", "球", "，", "2", "0", "0", "8", "年", "到",
                                        "了", "北", "京", "。"]
    assert all(post[t.start:t.end] == t.text for t in tokens)
    assert join_tokens(["北", "京"], "chars") == "北京" and join_tokens(["New", "York"], "twitter2017") == "New York"


def test_a_character_level_training_file_gets_the_chars_convention_and_a_setting_wins(tmp_path: Path) -> None:
    chinese = [t for s in read_conll(write_char_corpus(tmp_path)["train"]).sentences for t in s.tokens]
    twitter = [t for s in read_conll(SAMPLE / "train.txt", repair=True).sentences for t in s.tokens]
    assert training_style(chinese, "msra-style") == "chars"
    assert training_style(twitter, "twitter2015-sample") == "twitter2015" and training_style(twitter, "own") == "twitter2017"
    assert training_style(chinese, "msra-style", "twitter2017") == "twitter2017"  # dataset.tokenization set
    assert training_style(["a"] * 9 + ["ab"], None) == "chars"  # 90% single characters: character-level
    assert training_style(["a"] * 8 + ["ab"] * 2, None) == "twitter2017"
    with pytest.raises(ValueError, match="tokenization='words'; expected auto or one of"):
        training_style(chinese, None, "words")
    assert get_args(DatasetConfig.model_fields["tokenization"].annotation) == ("auto", *STYLES)


def test_rebuilt_posts_read_as_a_user_writes() -> None:
    tokens = ["Lady", "Gaga", "out", "in", "NYC", ".", "(", "May", ",", "2", "nd", ")", "@", "ladygaga", "It", "'", "s",
              "#", "fun", "❤", "\ufe0f"]
    text, spans = rebuild_post(tokens)
    assert text == "Lady Gaga out in NYC. (May, 2nd) @ladygaga It's #fun ❤\ufe0f"
    assert [text[a:b] for a, b in spans] == tokens
    assert _texts(tokens) == tokens


@pytest.mark.parametrize("dataset", ["twitter2017", "twitter2015"])
def test_tokenizing_rebuilt_benchmark_posts_gives_their_tokens(dataset: str) -> None:
    """Every split of the real benchmark: rebuild each post's text from its tokens, tokenize it, compare exactly."""
    folder = SHARED_DATA / dataset
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the real benchmark data lives in ../shared/data")
    style = style_for_dataset(dataset)
    posts = [s.tokens for split in ("train", "valid", "test") for s in read_conll(folder / f"{split}.txt", repair=True).sentences]
    same = sum(1 for tokens in posts if [t.text for t in tokenize_post(rebuild_post(tokens)[0], style)] == tokens)
    print(f"{dataset}: {same} of {len(posts)} posts agree exactly ({same / len(posts):.2%})")
    assert same / len(posts) >= AGREEMENT_FLOOR[dataset], f"{same} of {len(posts)}"
