"""
Checkpoints of a training run, shared by the trainers (train.py, train_owl.py).

A stopped run lives in OUT/checkpoint: the model directory (safetensors,
tokenizer, processor, written by the trainer's own function), the optimizer's
tensors and torch's random state in trainer.safetensors, and in trainer.json the
step, the sampler's state, the elapsed minutes, the history and the arguments the
run was started with. `--resume` continues it to the same weights an
uninterrupted run reaches; a resume that changes what is trained is refused.
"""
import argparse
import json
from pathlib import Path
from typing import Callable

import numpy as np
from safetensors.torch import load_file, save_file
import torch

# What a resume may change: how long and how often, not what is trained.
RESUMABLE_CHANGES = ('steps', 'until_step', 'checkpoint_every', 'eval_every', 'resume', 'device',
                     'minutes')


class Checkpoint:
    """A stopped run, in OUT/checkpoint: what --resume needs to continue it exactly."""

    def __init__(self, out: Path):
        self.directory = Path(out) / 'checkpoint'

    def exists(self) -> bool:
        return (self.directory / 'trainer.json').is_file()

    def save(self, write_model: Callable[[Path], object], optimizer: torch.optim.Optimizer,
             rng: np.random.Generator, step: int, minutes: float, history: list,
             arguments: dict) -> None:
        """Write the checkpoint whole; `write_model(directory)` saves the model there."""
        partial = self.directory.with_name('checkpoint.partial')
        remove_tree(partial)
        write_model(partial)
        state = optimizer.state_dict()
        tensors = {f'{index}.{key}': value.contiguous()
                   for index, values in state['state'].items() for key, value in values.items()}
        tensors['torch_rng'] = torch.get_rng_state()
        save_file(tensors, partial / 'trainer.safetensors')
        (partial / 'trainer.json').write_text(json.dumps({
            'step': step, 'minutes': minutes, 'sampler': rng.bit_generator.state,
            'param_groups': state['param_groups'], 'history': history,
            'arguments': arguments}))
        # a run stopped while writing keeps the previous checkpoint whole
        if self.directory.exists():
            self.directory.rename(self.directory.with_name('checkpoint.old'))
        partial.rename(self.directory)
        remove_tree(self.directory.with_name('checkpoint.old'))

    def arguments(self) -> dict:
        return json.loads((self.directory / 'trainer.json').read_text())['arguments']

    def restore(self, optimizer: torch.optim.Optimizer,
                rng: np.random.Generator) -> tuple[int, float, list]:
        """Load the optimizer, torch's and the sampler's state; return (step, minutes, history)."""
        saved = json.loads((self.directory / 'trainer.json').read_text())
        tensors = load_file(self.directory / 'trainer.safetensors')
        torch.set_rng_state(tensors.pop('torch_rng'))
        state = {}
        for name, value in tensors.items():
            index, key = name.split('.', 1)
            state.setdefault(int(index), {})[key] = value
        optimizer.load_state_dict({'state': state, 'param_groups': saved['param_groups']})
        rng.bit_generator.state = saved['sampler']
        return saved['step'], saved['minutes'], saved['history']

    def remove(self) -> None:
        remove_tree(self.directory)


def remove_tree(path: Path) -> None:
    if path.exists():
        for child in sorted(path.rglob('*'), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        path.rmdir()


def add_run_arguments(parser: argparse.ArgumentParser, *, steps: int, batch_size: int,
                      lr: float, warmup: int, lr_help: str | None = None) -> None:
    """Add what every trainer takes: its schedule, its seed and its checkpoints."""
    parser.add_argument('--steps', type=int, default=steps)
    parser.add_argument('--batch-size', type=int, default=batch_size)
    parser.add_argument('--lr', type=float, default=lr, help=lr_help)
    parser.add_argument('--warmup', type=int, default=warmup, help='steps of linear warm-up')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--checkpoint-every', type=int, default=250,
                        help='save OUT/checkpoint every N steps (0: never)')
    parser.add_argument('--resume', action='store_true',
                        help='continue the run stopped in OUT/checkpoint')
    parser.add_argument('--until-step', type=int, default=None,
                        help='stop after this step, with a checkpoint (--resume continues)')


def check_resume(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a --resume without a checkpoint, or one that changes what is trained."""
    if not args.resume:
        return
    checkpoint = Checkpoint(args.out)
    if not checkpoint.exists():
        parser.error(f'--resume: no checkpoint in {checkpoint.directory}')
    changed = sorted(key for key, value in checkpoint.arguments().items()
                     if key not in RESUMABLE_CHANGES and value != jsonable(vars(args))[key])
    if changed:
        parser.error(f'--resume with other arguments than the stopped run: '
                     f'{", ".join("--" + key.replace("_", "-") for key in changed)}')


def jsonable(arguments: dict) -> dict:
    """Command-line arguments as JSON values (lists joined, paths as strings)."""
    return {k: ' '.join(map(str, v)) if isinstance(v, list) else v if v is None or isinstance(
        v, (bool, int, float)) else str(v) for k, v in arguments.items()}
