"""Posts are streamed into shards by byte ranges (mner.posts): every post lands in exactly one shard, in order."""

from __future__ import annotations

import json
from pathlib import Path

from mner.posts import detect_format, read_shard, scan_shards


def _ids(path: Path, fmt: str, size: int) -> list[list[str]]:
    return [[post.id for post in read_shard(spec)] for spec in scan_shards(path, fmt, size)]


def test_shards_cover_every_post_once_in_order_for_each_format(tmp_path: Path) -> None:
    jsonl = tmp_path / "posts.jsonl"
    jsonl.write_text("".join(json.dumps({"id": f"j{i}", "text": f"post {i}"}) + "\n" + ("\n" if i == 3 else "")
                             for i in range(7)), encoding="utf-8")
    text = tmp_path / "posts.txt"
    text.write_text("one\ntwo\n\nfour\n", encoding="utf-8")
    conll = tmp_path / "posts.conll"
    conll.write_text("IMGID:a\nLady\tB-PER\nGaga\tI-PER\n\nIMGID:b\nNYC\n\n\nIMGID:c\nParis\tB-LOC\n", encoding="utf-8")
    assert [detect_format(p) for p in (jsonl, text, conll)] == ["jsonl", "text", "conll"]
    assert _ids(jsonl, "jsonl", 3) == [["j0", "j1", "j2"], ["j3", "j4", "j5"], ["j6"]]  # the blank line is no post
    assert _ids(text, "text", 3) == [["posts.txt:1", "posts.txt:2", "posts.txt:3"], ["posts.txt:4"]]
    assert _ids(conll, "conll", 2) == [["a", "b"], ["c"]]
    posts = [post for spec in scan_shards(conll, "conll", 2) for post in read_shard(spec)]
    assert [(p.tokens, p.where.rpartition(":")[2]) for p in posts] == [(["Lady", "Gaga"], "1"), (["NYC"], "5"), (["Paris"], "9")]
    specs = list(scan_shards(jsonl, "jsonl", 3))
    assert [(s.start, s.first_line, s.posts) for s in specs][0] == (0, 1, 3) and specs[-1].stop == jsonl.stat().st_size
    assert all(a.stop == b.start for a, b in zip(specs, specs[1:]))  # contiguous byte ranges
    assert len({s.sha256 for s in specs}) == 3
