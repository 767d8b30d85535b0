"""
Compare image towers at matched CPU time: the probe accuracy each reaches.

    python -m clip_perception.tools.compare_towers --data DIR --eval-data DIR \
        --out build/towers --minutes 10 [--tower demo demo-wide demo-conv]

Each tower is trained from scratch by `clip_perception.train` on the same pairs,
with the same seed, batch, learning rate and a time budget of --minutes (the
schedule follows the elapsed fraction, so each run completes its schedule in
its budget); the probe (held-out crops, decided as the detector decides a
window) is measured every --eval-every steps. Prints one curve line per tower,
   tower: NAME steps: S probe: [(minutes, accuracy), ...] final: A
and writes them to OUT/curves.json.
"""
import argparse
import json
from pathlib import Path

from clip_perception.tools.cli import one_line_errors
from clip_perception.tools.train import main as train_main
from clip_perception.tools.train import SIZES


def curve(summary: dict) -> list[tuple[float, float]]:
    return [(point['minutes'], point['probe_accuracy']) for point in summary['probe']]


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--data', type=Path, nargs='+', required=True)
    parser.add_argument('--eval-data', type=Path, required=True)
    parser.add_argument('--out', type=Path, required=True, help='one model folder per tower')
    parser.add_argument('--tower', nargs='+', choices=sorted(SIZES),
                        default=['demo', 'demo-wide', 'demo-conv'])
    parser.add_argument('--minutes', type=float, default=10.0, help='budget per tower')
    parser.add_argument('--eval-every', type=int, default=100)
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--lr', type=float, default=7e-4)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)

    curves = {}
    for tower in args.tower:
        out = args.out / tower
        train_main(['--data', *map(str, args.data), '--eval-data', str(args.eval_data),
                    '--out', str(out), '--size', tower, '--minutes', str(args.minutes),
                    '--eval-every', str(args.eval_every), '--batch-size', str(args.batch_size),
                    '--lr', str(args.lr), '--seed', str(args.seed), '--checkpoint-every', '0'])
        summary = json.loads((out / 'training.json').read_text())
        curves[tower] = {'steps': summary['steps'], 'probe': curve(summary)}
        (args.out / 'curves.json').write_text(json.dumps(curves, indent=1))
    for tower, result in curves.items():
        print(f"tower: {tower} steps: {result['steps']} probe: "
              f"{[(round(m, 1), a) for m, a in result['probe']]} "
              f"final: {result['probe'][-1][1]}")


if __name__ == '__main__':
    main()
