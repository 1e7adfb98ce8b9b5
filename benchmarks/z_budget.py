"""How much of Z the tagger's sub-token budget (``model.max_length``) cuts, per split, before any training.

    python benchmarks/z_budget.py --config configs/twitter2017.yaml [--budget 128 192 256 320 384]

The [T;Z] input is ``[CLS] T [SEP] Z [SEP]``; T is never cut, Z is cut to fit ``model.max_length``
(:class:`models.encoding.SentenceEncoder`). A budget that cuts no Z on a split gives the tagger the
same inputs as any larger one, so sweeping it there cannot change F1; this script says where that
is so. It reads the splits joined with the config's knowledge from the pipeline's ``knowledge`` stage
(``mner run --until knowledge``), encodes every sentence with the config's
encoder tokenizer and no budget, and appends one row per split to benchmarks/results/z_budget.jsonl:
the full input length (mean, median, 90th and 99th percentile, max) and, per budget, the share of
sentences whose Z is cut and the share of Z sub-tokens dropped.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from harness import RESULTS_DIR, append_rows, config_parser, parse_args, parse_overrides, provenance, run_until, typed_overrides
from transformers import AutoTokenizer

from engine.runtime import resolve_encoder
from mner.config import load_config
from mner.samples import SPLITS, read_samples
from models.encoding import SentenceEncoder

RESULTS = RESULTS_DIR / "z_budget.jsonl"
UNBOUNDED = 1 << 20


def percentile(values: list[int], share: float) -> int:
    """The smallest value with at least ``share`` of ``values`` at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def main() -> None:
    """Encode every split without a budget, then count what each budget would cut."""
    parser = config_parser(__doc__)
    parser.add_argument("--budget", type=int, nargs="+", default=[128, 192, 256, 320, 384])
    args = parse_args(parser)
    cfg = load_config(args.config, parse_overrides(args.set))
    joined = run_until(args.config, "knowledge", typed_overrides(args.set))
    encoder = SentenceEncoder(AutoTokenizer.from_pretrained(resolve_encoder(cfg.model.encoder)), UNBOUNDED)
    rows = []
    for split in SPLITS:
        samples = read_samples(Path(joined["dir"]) / f"{split}.jsonl")
        encoded = [encoder.encode(s.tokens, None, s.knowledge) for s in samples]
        lengths = [len(e.input_ids) for e in encoded]
        text = [len(e.input_ids) - e.knowledge_pieces - (1 if e.knowledge_pieces else 0) for e in encoded]
        z = [e.knowledge_pieces for e in encoded]
        budgets = {}
        for budget in args.budget:
            kept = [min(piece, max(budget - t - 1, 0)) for piece, t in zip(z, text)]
            budgets[str(budget)] = {
                "z_cut_share": round(sum(k < piece for k, piece in zip(kept, z)) / len(z), 4),
                "z_pieces_dropped_share": round(1 - sum(kept) / max(sum(z), 1), 4),
                "text_too_long": sum(t > budget for t in text),
            }
        rows.append({"dataset": cfg.dataset.name, "split": split, "sentences": len(samples), "encoder": cfg.model.encoder,
                     "config_max_length": cfg.model.max_length,
                     "length": {"mean": round(statistics.fmean(lengths), 1), "median": percentile(lengths, 0.5),
                                "p90": percentile(lengths, 0.9), "p99": percentile(lengths, 0.99), "max": max(lengths)},
                     "without_z": sum(piece == 0 for piece in z), "budgets": budgets, **provenance()})
    append_rows(RESULTS, rows)
    for r in rows:
        print(r["dataset"], r["split"], r["length"], {b: v["z_cut_share"] for b, v in r["budgets"].items()})


if __name__ == "__main__":
    main()
