"""Write synthetic workbench data sets in the formats of `datasets.py`.

    python -m clip_perception.make_dataset crops  OUT --count 40000 --seed 1
    python -m clip_perception.make_dataset scenes OUT --count 200 --blank 50 --seed 1001
    python -m clip_perception.make_dataset hard   OUT --count 6000 --seed 2 \
        --model MODEL_DIR --params config/demo.yaml

`crops`: image-text pairs cut from synthetic scenes with the same window grid
and the same on-device resize the detector uses at inference, so training sees
what the detector will see. Labels follow R-CNN (see POSITIVE_IOU): a window
fitting one tool is captioned with the tool; background windows get one of
BACKGROUND_CAPTIONS (empty bench, part of a tool, several tools, a tool small
in a large window); ambiguous windows are left out.
`scenes`: full frames with COCO-style boxes, plus empty benches.
`hard`: crops labelled like `crops` that a trained model gets wrong, from fresh
scenes (hard-example mining), to fine-tune that model on its own mistakes.
"""
import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from clip_perception.crops import crop_pixels
from clip_perception.datasets import (AnnotatedScene, CaptionedImage, write_captions, write_rgb,
                                      write_scenes)
from clip_perception.model_building import DEMO_SIZE
from clip_perception.preprocess import frame_to_device
from clip_perception.synthetic import TOOLS, make_scene
from clip_perception.windows import WindowSpec, window_grid

# The windows of the demo configuration (config/demo.yaml); training crops come from them.
DEMO_WINDOWS = WindowSpec(scales=(0.75, 0.55, 0.4, 0.28), aspect_ratios=(1.0, 2.0, 0.5),
                          overlap=0.6)
DEMO_FRAME = (240, 320)  # height, width
TOOL_CAPTIONS = ('a photo of a {}.', 'a photo of the {}.', 'a close-up photo of a {}.',
                 'a photo of a {} on a workbench.', 'a cropped photo of a {}.',
                 'a {} lying on a bench.')
EMPTY_CAPTION = 'a photo of an empty workbench.'
PART_CAPTION = 'a photo of part of a tool.'
SEVERAL_CAPTION = 'a photo of several tools.'
LOOSE_CAPTION = 'a photo of a small tool on a large workbench.'
BACKGROUND_CAPTIONS = (EMPTY_CAPTION, PART_CAPTION, SEVERAL_CAPTION, LOOSE_CAPTION)


# Window labels follow R-CNN: a window names a tool when it fits the tool's box
# (IoU >= POSITIVE_IOU) and holds most of it (POSITIVE_INSIDE: a hammer without
# its head is not shown as a hammer), so among all windows that contain a tool
# the classifier prefers the well-fitting ones and the best window is a good box.
# Windows with IoU < NEGATIVE_IOU are background: the tool lies loosely inside
# (most of it in the window), only part of it is in, or it is absent. Windows in
# between, and windows with a tool that is neither mostly in nor mostly out, are
# not used.
POSITIVE_IOU, NEGATIVE_IOU = 0.5, 0.3
POSITIVE_INSIDE = 0.7
MOSTLY_IN, MOSTLY_OUT, NEGLIGIBLE = 0.9, 0.5, 0.1


def window_captions(windows: np.ndarray, objects) -> list[tuple[int, str | None, str] | None]:
    """Per window: (index, caption, label) — caption None for a tool (templates are
    chosen later), label '' for background — or None for an ambiguous window."""
    out = []
    areas = (windows[:, 2] - windows[:, 0]) * (windows[:, 3] - windows[:, 1])
    for index, window in enumerate(windows):
        present = []  # (object, fraction of it inside, IoU with the window)
        for obj in objects:
            x0, y0, x1, y1 = obj.box
            inter = (max(0, min(x1, window[2]) - max(x0, window[0])) *
                     max(0, min(y1, window[3]) - max(y0, window[1])))
            box_area = max(1, (x1 - x0) * (y1 - y0))
            if inter / box_area > NEGLIGIBLE:
                present.append((obj, inter / box_area,
                                inter / (box_area + areas[index] - inter)))
        if not present:
            out.append((index, EMPTY_CAPTION, ''))
        elif sum(inside > MOSTLY_OUT for _, inside, _ in present) >= 2:
            out.append((index, SEVERAL_CAPTION, ''))
        elif len(present) > 1:
            out.append(None)
        else:
            obj, inside, iou = present[0]
            if iou >= POSITIVE_IOU and inside >= POSITIVE_INSIDE:
                out.append((index, None, obj.label))
            elif iou < NEGATIVE_IOU and inside >= MOSTLY_IN:
                out.append((index, LOOSE_CAPTION, ''))
            elif iou < NEGATIVE_IOU and inside <= MOSTLY_OUT:
                out.append((index, PART_CAPTION, ''))
            else:
                out.append(None)
    return out


def _stratified(windows, count: int, rng) -> list:
    """Up to `count` windows drawn in turn from each caption (rare kinds are kept)."""
    by_caption = {}
    for window in (windows[i] for i in rng.permutation(len(windows))):
        by_caption.setdefault(window[1], []).append(window)
    chosen, queues = [], list(by_caption.values())
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop())
    return chosen


def make_crops(out: Path, count: int, seed: int, crop: int = DEMO_SIZE.image_size,
               windows: WindowSpec = DEMO_WINDOWS, per_scene: int = 8,
               background_per_tool: float = 1.5) -> list[CaptionedImage]:
    """`count` captioned crops: per scene at most `per_scene` tool windows and
    `background_per_tool` times as many background windows (at least 2, spread over
    the background kinds), so scenes are many; at inference most windows are
    background, hence more background than tools."""
    rng = np.random.default_rng(seed)
    height, width = DEMO_FRAME
    grid = window_grid(height, width, windows)
    items = []
    with tqdm(total=count, desc='crops', unit='crop') as progress:
        while len(items) < count:
            scene = make_scene(rng, height, width, count=int(rng.integers(0, 4)))
            labelled = [c for c in window_captions(grid, scene.objects) if c]
            tools = [c for c in labelled if c[2]]
            background = [c for c in labelled if not c[2]]
            tools = [tools[i] for i in rng.permutation(len(tools))[:per_scene]]
            wanted = max(2, round(background_per_tool * len(tools)))
            chosen = tools + _stratified(background, wanted, rng)
            _write_windows(out, scene.image, grid, chosen[:count - len(items)], crop, rng, items)
            progress.update(len(items) - progress.n)
    write_captions(out, items)
    return items


def make_hard_crops(out: Path, detector, count: int, seed: int,
                    per_scene: int = 8) -> list[CaptionedImage]:
    """`count` crops that `detector` gets wrong (hard examples, as R-CNN and DPM mine
    them): windows of fresh scenes, labelled as in make_crops, whose best class
    (over the detector's labels and background prompts) differs from their label —
    mostly a part of one tool or a loose window named as a tool. At most
    `per_scene` per scene, so the mistakes come from many scenes."""
    rng = np.random.default_rng(seed)
    height, width = DEMO_FRAME
    names = detector.class_embeddings().column_labels
    crop = detector.encoder.settings.crop
    items, scenes = [], 0
    with tqdm(total=count, desc='hard crops', unit='crop') as progress:
        while len(items) < count:
            scene = make_scene(rng, height, width, count=int(rng.integers(0, 4)))
            scenes += 1
            _, grid, logits = detector.score_windows([scene.image])[0]
            predicted = logits.argmax(axis=1)
            wrong = [c for c in window_captions(grid, scene.objects)
                     if c and names[predicted[c[0]]] != c[2]]
            chosen = [wrong[i] for i in rng.permutation(len(wrong))[:per_scene]]
            _write_windows(out, scene.image, grid, chosen[:count - len(items)], crop, rng, items)
            progress.update(len(items) - progress.n)
            progress.set_postfix(scenes=scenes)
    write_captions(out, items)
    return items


def _write_windows(out: Path, image: np.ndarray, grid: np.ndarray, chosen, crop: int, rng,
                   items: list[CaptionedImage]) -> None:
    """Cut the `chosen` (index, caption, label) windows as the detector does and append
    them to `items`; tool windows get a random TOOL_CAPTIONS template."""
    if not chosen:
        return
    pixels = crop_pixels(frame_to_device(image, torch.device('cpu')),
                         grid[[c[0] for c in chosen]], crop)
    pixels = pixels.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    for (_, caption, label), window in zip(chosen, pixels):
        if label:
            caption = TOOL_CAPTIONS[int(rng.integers(len(TOOL_CAPTIONS)))].replace('{}', label)
        path = out / 'images' / f'{len(items):06d}.png'
        write_rgb(path, window)
        items.append(CaptionedImage(path, caption, label))


def make_scenes(out: Path, count: int, blank: int, seed: int) -> list[AnnotatedScene]:
    """`count` scenes with 1–3 tools and `blank` empty benches, COCO-style annotations."""
    rng = np.random.default_rng(seed)
    height, width = DEMO_FRAME
    scenes = []
    for index in tqdm(range(count + blank), desc='scenes', unit='scene'):
        scene = make_scene(rng, height, width, count=0 if index >= count else None)
        path = out / 'scenes' / f'{index:06d}.png'
        write_rgb(path, scene.image)
        scenes.append(AnnotatedScene(path, width, height,
                                     tuple((o.label, o.box) for o in scene.objects)))
    write_scenes(out, scenes, TOOLS)
    return scenes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('kind', choices=('crops', 'scenes', 'hard'))
    parser.add_argument('out', type=Path)
    parser.add_argument('--count', type=int, required=True)
    parser.add_argument('--blank', type=int, default=0, help='scenes: empty benches to add')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--crop', type=int, default=DEMO_SIZE.image_size,
                        help="crops: side in pixels (the model's input size)")
    parser.add_argument('--model', help='hard: the model whose mistakes are mined')
    parser.add_argument('--params', type=Path,
                        help='hard: ROS parameter file with its labels, prompts and windows')
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.kind == 'crops':
        make_crops(args.out, args.count, args.seed, args.crop)
    elif args.kind == 'scenes':
        make_scenes(args.out, args.count, args.blank, args.seed)
    else:
        if not (args.model and args.params):
            parser.error('hard needs --model and --params')
        from clip_perception.detector import ZeroShotDetector
        from clip_perception.model_loading import load_clip
        from clip_perception.parameters import settings_from_file
        detector = ZeroShotDetector(load_clip(args.model, 'cpu'), settings_from_file(args.params))
        make_hard_crops(args.out, detector, args.count, args.seed)


if __name__ == '__main__':
    main()
