"""Learning-rate finder: ``python -m fashion_keras.lr_find --heads deepfashion6 [train flags]``.

Sweeps the learning rate exponentially from ``--start-lr`` to ``--end-lr`` over ``--num-steps``
training steps of the model that ``python -m fashion_keras.train`` with the same flags would
train, stops early once the smoothed loss exceeds ``--stop-factor`` times its minimum, and saves
a loss-vs-learning-rate plot (PNG), the curve (CSV) and the suggestion (JSON). The library call
is :func:`fashion_keras.training.lr_find.find_lr`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from fashion_keras import cli
from fashion_keras.train import parse_training_flags
from fashion_keras.training.lr_find import find_lr


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.command_parser("python -m fashion_keras.lr_find", __doc__.split("\n\n")[1])
    sweep = parser.add_argument_group("sweep")
    sweep.add_argument("--start-lr", type=float, default=1e-7, help="First learning rate.")
    sweep.add_argument("--end-lr", type=float, default=10.0, help="Last learning rate.")
    sweep.add_argument("--num-steps", type=int, default=200, help="Training steps of the sweep.")
    sweep.add_argument(
        "--stop-factor",
        type=float,
        default=4.0,
        help="Stop when the smoothed loss exceeds this times its minimum.",
    )
    sweep.add_argument(
        "--plot", default=None, help="Output PNG (default: <output-dir>/lr_find.png)."
    )
    args, cfg = parse_training_flags(parser, argv)
    with cli.input_errors(args.debug):
        result = find_lr(
            cfg,
            start_lr=args.start_lr,
            end_lr=args.end_lr,
            num_steps=args.num_steps,
            stop_factor=args.stop_factor,
            output=args.plot,
        )
    print(
        f"suggested learning rate: {result.suggestion:.3g} (loss minimum at "
        f"{result.min_loss_lr:.3g}, {len(result.lrs)} steps)\n"
        f"plot: {result.plot_path}\ncurve: {result.csv_path}\nsummary: {result.json_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
