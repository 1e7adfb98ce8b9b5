"""What ``mner run`` prints: a small table of the scores by default, the JSON with ``--json``."""

from __future__ import annotations

from cli.main import scores_table


def test_the_scores_table_names_each_variant_its_scores_and_model() -> None:
    result = {"text": {"dev_f1": 0.5212, "test_f1": 0.5806, "test_precision": 0.5454, "test_recall": 0.6207,
                       "model": "/store/train/abc"},
              "text+knowledge": {"dev_f1": 0.497, "test_f1": 0.5579, "test_precision": 0.5146, "test_recall": 0.6092,
                                 "model": "/store/train/def"}}
    lines = scores_table(result).splitlines()
    assert lines[0].split()[:4] == ["variant", "dev", "F1", "test"] and len(lines) == 3
    assert lines[1].split() == ["text", "52.12", "54.54", "62.07", "58.06", "/store/train/abc"]
    assert lines[2].split() == ["text+knowledge", "49.70", "51.46", "60.92", "55.79", "/store/train/def"]
    assert len({line.index("/store") for line in lines[1:]}) == 1  # columns line up
