"""Loss-weight grid benchmark: the real ``mner-backbone-grid`` flow on a benchmark split.

    python benchmarks/backbone_grid.py --config configs/twitter2017.yaml [--align 0 --align 0.1]
        [--infonce 0 --infonce 0.1] [--set backbone.s2_epochs=3 ...]

Runs the flow (Prefect's local ephemeral server, the project's artifact store; every point is a
cached ``backbone`` stage), then appends one JSON line per grid point to
benchmarks/results/backbone_grid.jsonl: dataset, weights, dev/test P/R/F1 (percent), the point chosen
on dev, train seconds, the command, commit, date and machine.
"""

from __future__ import annotations

import json
import time

from harness import RESULTS_DIR, append_rows, config_parser, parse_args, parse_overrides, provenance

from mner.server import prefect_defaults

RESULTS = RESULTS_DIR / "backbone_grid.jsonl"


def main() -> None:
    """Parse arguments, run the grid flow, append one line per point."""
    parser = config_parser(__doc__)
    parser.add_argument("--align", action="append", type=float, help="align_lambda values (repeat; default 0 0.1)")
    parser.add_argument("--infonce", action="append", type=float, help="infonce_lambda values (repeat; default 0 0.1)")
    args = parse_args(parser)
    prefect_defaults()
    from flows.backbone_grid import backbone_grid

    overrides = parse_overrides(args.set)
    started = time.time()
    rows = backbone_grid(config_file=args.config, overrides=overrides,
                         align_lambdas=args.align or [0.0, 0.1], infonce_lambdas=args.infonce or [0.0, 0.1])
    meta = {"overrides": overrides, "wall_seconds": round(time.time() - started, 1), **provenance()}
    append_rows(RESULTS, [{**row, **meta} for row in rows])
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
