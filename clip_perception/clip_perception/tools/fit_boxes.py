r"""
Fit a model's box regressor on annotated scenes and store it with the model.

    python -m clip_perception.fit_boxes --model models/workbench_demo \
        --scenes build/train/boxes --params config/demo.yaml

Every window of the `--params` grid that overlaps a ground-truth box by IoU >=
--min-iou is cut and embedded as the detector does, and paired with the box it
should become (the one it overlaps most). The regressor from the embeddings to
the box deltas (see box_regression.py) is fitted on all but every tenth scene;
those are held out to report how much closer the windows get. The
result is written to the model directory (or --out) as box_regressor.safetensors,
and the detector uses it from then on (parameter `box_regression`). Refit after
every retraining: the regressor belongs to the model's embeddings.
"""
import argparse
import json
import logging
from pathlib import Path

from clip_perception.engine.boxes import pairwise_iou
from clip_perception.engine.detector import ZeroShotDetector
from clip_perception.engine.model_loading import load_clip
from clip_perception.engine.sliding_windows.box_regression import box_deltas, BoxRegressor
from clip_perception.engine.sliding_windows.grid import window_grid, WindowSpec
from clip_perception.ros.package_files import resolve_model
from clip_perception.ros.parameters import settings_from_file
from clip_perception.tools.datasets import read_rgb, read_scenes
import numpy as np
import torch
from tqdm import tqdm

HOLDOUT_EVERY = 10


def fit_regressor(features: np.ndarray, targets: np.ndarray, hidden: int = 256,
                  steps: int = 3000, batch_size: int = 512, lr: float = 3e-3,
                  weight_decay: float = 1e-2, seed: int = 0) -> dict[str, torch.Tensor]:
    """
    Fit the box regressor's layers.

    [N, D] embeddings and [N, 4] deltas -> the layers of BoxRegressor: AdamW on the
    smooth-L1 loss of standardized deltas, cosine schedule; deterministic for a seed.
    The deltas' mean and spread are folded into the output layer.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(features, dtype=torch.float32)
    y = torch.as_tensor(targets, dtype=torch.float32)
    mean, spread = y.mean(dim=0), y.std(dim=0).clamp(min=1e-6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.GELU(),
                                  torch.nn.Linear(hidden, 4))
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        batch = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=generator)
        loss = torch.nn.functional.smooth_l1_loss(net(x[batch]), (y[batch] - mean) / spread)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    first, _, last = net
    return {'hidden.weight': first.weight.detach().clone(),
            'hidden.bias': first.bias.detach().clone(),
            'out.weight': (last.weight * spread[:, None]).detach(),
            'out.bias': (last.bias * spread + mean).detach()}


def training_windows(scenes, windows: WindowSpec, min_iou: float):
    """
    Pair the grid's windows with the ground truth they overlap.

    Per scene: (int grid windows overlapping a ground truth by >= min_iou [n, 4], the
    float ground-truth box each overlaps most [n, 4]).
    """
    for scene in scenes:
        grid = window_grid(scene.height, scene.width, windows)
        truths = np.array([box for _, box in scene.objects], np.float64).reshape(-1, 4)
        if not len(truths):
            yield scene, grid[:0], truths
            continue
        iou = pairwise_iou(grid, truths)
        chosen = np.flatnonzero(iou.max(axis=1) >= min_iou)
        yield scene, grid[chosen], truths[iou[chosen].argmax(axis=1)]


def mean_iou(boxes: np.ndarray, truths: np.ndarray) -> float:
    """Mean IoU of each box with its own ground truth."""
    return float(np.mean([pairwise_iou(b[None], t[None])[0, 0] for b, t in zip(boxes, truths)]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--model', required=True, help='model directory (or hub id with --out)')
    parser.add_argument('--scenes', type=Path, required=True,
                        help='folder with annotations.json (datasets.py format)')
    parser.add_argument('--params', type=Path, required=True,
                        help='ROS parameter file whose windows the detector will use')
    parser.add_argument('--out', type=Path, help='where to write (default: the model directory)')
    parser.add_argument('--min-iou', type=float, default=0.4)
    parser.add_argument('--hidden', type=int, default=256, help='hidden layer width')
    parser.add_argument('--steps', type=int, default=3000)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')

    if args.out is None and not Path(args.model).is_dir():
        parser.error('--out is needed when --model is not a local directory')
    detector = ZeroShotDetector(load_clip(resolve_model(args.model), args.device, 'fp32'),
                                settings_from_file(args.params))
    out = args.out or Path(args.model)
    scenes = read_scenes(args.scenes)
    parts = {'fit': ([], [], []), 'holdout': ([], [], [])}
    for index, (scene, boxes, truths) in enumerate(tqdm(
            training_windows(scenes, detector.settings.windows, args.min_iou), total=len(scenes),
            desc='windows', unit='scene')):
        if not len(boxes):
            continue
        features, targets, pairs = parts['holdout' if index % HOLDOUT_EVERY == 0 else 'fit']
        (scored,) = detector.score_windows([read_rgb(scene.path)], windows=[boxes])
        features.append(scored.embeddings.cpu().numpy())
        targets.append(box_deltas(boxes, truths))
        pairs.append((boxes, truths, scene.height, scene.width))
    features, targets, _ = parts['fit']
    if not features:
        parser.error(f'no window of {args.scenes} overlaps a box by IoU >= {args.min_iou}')
    layers = fit_regressor(np.concatenate(features), np.concatenate(targets), args.hidden,
                           args.steps, seed=args.seed)
    info = {'scenes': str(args.scenes), 'windows_fitted': int(sum(map(len, features))),
            'min_iou': args.min_iou, 'hidden': args.hidden, 'steps': args.steps,
            'seed': args.seed}
    regressor = BoxRegressor(layers, info)
    features, _, pairs = parts['holdout']
    if features:
        moved = np.concatenate([regressor.regress(boxes, torch.from_numpy(embedded), height, width)
                                for embedded, (boxes, _, height, width) in zip(features, pairs)])
        boxes = np.concatenate([boxes for boxes, *_ in pairs])
        truths = np.concatenate([truths for _, truths, *_ in pairs])
        info.update(holdout_windows=len(boxes),
                    holdout_iou_before=round(mean_iou(boxes, truths), 4),
                    holdout_iou_after=round(mean_iou(moved, truths), 4))
    out.mkdir(parents=True, exist_ok=True)
    path = regressor.save(out)
    print(json.dumps(info))
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
