"""
Write synthetic workbench data sets in the formats of `datasets.py`.

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
import collections
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
import os
from pathlib import Path
from typing import NamedTuple

from clip_perception.engine.boxes import box_areas, pairwise_intersections
from clip_perception.engine.preprocess import frame_to_device
from clip_perception.engine.prompts import DEFAULT_PROMPT_TEMPLATES
from clip_perception.engine.sliding_windows.crops import crop_pixels
from clip_perception.engine.sliding_windows.grid import window_grid, WindowSpec
from clip_perception.ros.package_files import resolve_model
from clip_perception.ros.parameters import settings_from_file
from clip_perception.tools.assets import DEMO_PARAMS
from clip_perception.tools.datasets import (AnnotatedScene, CaptionedImage, write_captions,
                                            write_rgb, write_scenes)
from clip_perception.tools.model_building import DEMO_SIZE
from clip_perception.tools.synthetic import FRAME_SIZE, make_scene, TOOLS
import numpy as np
import torch
from tqdm import tqdm

# Tool captions: the node's prompt templates and one more, so training sees some variety.
TOOL_CAPTIONS = DEFAULT_PROMPT_TEMPLATES + ('a {} lying on a bench.',)
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
_TOOL = object()  # window_captions' rule for a window that shows a tool


class WindowCaption(NamedTuple):
    """
    A labelled window of the grid.

    Its index in the grid, its caption (None for a tool: a template is chosen
    when it is written) and its label ('' for background).
    """

    index: int
    caption: str | None
    label: str


def window_captions(windows: np.ndarray, objects) -> list[WindowCaption | None]:
    """Per window its WindowCaption, or None for an ambiguous window."""
    if not objects:
        return [WindowCaption(index, EMPTY_CAPTION, '') for index in range(len(windows))]
    boxes = np.array([obj.box for obj in objects], np.int64).reshape(-1, 4)
    inter = pairwise_intersections(windows, boxes)  # [windows, objects]
    object_areas = np.maximum(1, box_areas(boxes))
    inside = inter / object_areas[None, :]  # fraction of each object in each window
    iou = inter / (object_areas[None, :] + box_areas(windows)[:, None] - inter)
    present = inside > NEGLIGIBLE
    shown = present.sum(axis=1)
    alone = present.argmax(axis=1)  # the tool shown, where only one is
    fraction = np.take_along_axis(inside, alone[:, None], axis=1)[:, 0]
    overlap = np.take_along_axis(iou, alone[:, None], axis=1)[:, 0]
    # The first rule that holds decides; a window no rule takes is ambiguous (None).
    rules = [(shown == 0, EMPTY_CAPTION),
             ((inside > MOSTLY_OUT).sum(axis=1) >= 2, SEVERAL_CAPTION),
             (shown > 1, None),
             ((overlap >= POSITIVE_IOU) & (fraction >= POSITIVE_INSIDE), _TOOL),
             ((overlap < NEGATIVE_IOU) & (fraction >= MOSTLY_IN), LOOSE_CAPTION),
             ((overlap < NEGATIVE_IOU) & (fraction <= MOSTLY_OUT), PART_CAPTION)]
    captions = [caption for _, caption in rules] + [None]
    decided = np.select([rule for rule, _ in rules], range(len(rules)), default=len(rules))
    out = []
    for index, (rule, obj) in enumerate(zip(decided.tolist(), alone.tolist())):
        caption = captions[rule]
        if caption is None:
            out.append(None)
        elif caption is _TOOL:
            out.append(WindowCaption(index, None, objects[obj].label))
        else:
            out.append(WindowCaption(index, caption, ''))
    return out


def _stratified(windows, count: int, rng) -> list:
    """Up to `count` windows drawn in turn from each caption (rare kinds are kept)."""
    by_caption = {}
    for window in (windows[i] for i in rng.permutation(len(windows))):
        by_caption.setdefault(window.caption, []).append(window)
    chosen, queues = [], list(by_caption.values())
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop())
    return chosen


def demo_windows() -> WindowSpec:
    """
    Return the windows of the demo configuration (config/demo.yaml).

    The model learns the crops the detector will cut.
    """
    return settings_from_file(DEMO_PARAMS).windows


def make_crops(out: Path, count: int, seed: int, crop: int = DEMO_SIZE.image_size,
               windows: WindowSpec | None = None, per_scene: int = 8,
               background_per_tool: float = 1.5, jobs: int = 1) -> list[CaptionedImage]:
    """
    Write captioned training crops cut from synthetic scenes.

    `count` captioned crops of `windows` (default: demo_windows()): per scene at
    most `per_scene` tool windows and `background_per_tool` times as many background
    windows (at least 2, spread over the background kinds), so scenes are many; at
    inference most windows are background, hence more background than tools. `jobs`
    processes cut and write the crops (the result does not depend on it).
    """
    rng = np.random.default_rng(seed)
    height, width = FRAME_SIZE
    grid = window_grid(height, width, windows or demo_windows())
    items = []
    (out / 'images').mkdir(parents=True, exist_ok=True)
    with tqdm(total=count, desc='crops', unit='crop') as progress, \
            _CropWriter(crop, jobs) as writer:
        while len(items) < count:
            scene = make_scene(rng, height, width, count=int(rng.integers(0, 4)))
            labelled = [c for c in window_captions(grid, scene.objects) if c]
            tools = [c for c in labelled if c.label]
            background = [c for c in labelled if not c.label]
            tools = [tools[i] for i in rng.permutation(len(tools))[:per_scene]]
            wanted = max(2, round(background_per_tool * len(tools)))
            chosen = tools + _stratified(background, wanted, rng)
            _write_windows(out, writer, scene.image, grid, chosen[:count - len(items)], rng,
                           items)
            progress.update(len(items) - progress.n)
    write_captions(out, items)
    return items


def make_hard_crops(out: Path, detector, count: int, seed: int,
                    per_scene: int = 8) -> list[CaptionedImage]:
    """
    Write the crops that `detector` gets wrong (hard-example mining).

    `count` crops that `detector` gets wrong (hard examples, as R-CNN and DPM mine
    them): windows of fresh scenes, labelled as in make_crops, whose best class
    (over the detector's labels and background prompts) differs from their label —
    mostly a part of one tool or a loose window named as a tool. At most
    `per_scene` per scene, so the mistakes come from many scenes.
    """
    rng = np.random.default_rng(seed)
    height, width = FRAME_SIZE
    grid = window_grid(height, width, detector.settings.windows)
    names = detector.class_embeddings().column_labels
    crop = detector.encoder.settings.crop
    items, scenes = [], 0
    (out / 'images').mkdir(parents=True, exist_ok=True)
    with tqdm(total=count, desc='hard crops', unit='crop') as progress, \
            _CropWriter(crop) as writer:
        while len(items) < count:
            scene = make_scene(rng, height, width, count=int(rng.integers(0, 4)))
            scenes += 1
            # only labelled windows can be hard examples: the ambiguous ones are not scored
            labelled = [c for c in window_captions(grid, scene.objects) if c]
            wrong = []
            if labelled:
                scored = detector.score_windows([scene.image],
                                                windows=[grid[[c.index for c in labelled]]])[0]
                wrong = [c for c, k in zip(labelled, scored.logits.argmax(axis=1))
                         if names[k] != c.label]
            chosen = [wrong[i] for i in rng.permutation(len(wrong))[:per_scene]]
            _write_windows(out, writer, scene.image, grid, chosen[:count - len(items)], rng,
                           items)
            progress.update(len(items) - progress.n)
            progress.set_postfix(scenes=scenes)
    write_captions(out, items)
    return items


class _CropWriter:
    """
    Cut windows out of frames and write them as PNGs.

    Cuts windows out of frames as the detector does and writes them as PNGs, in
    `jobs` worker processes (spawned) or, with jobs=1, here. The caller draws every
    random number, so the data set is the same for any number of jobs.
    """

    def __init__(self, crop: int, jobs: int = 1):
        self.crop = crop
        self._pool = None
        self._pending = collections.deque()
        self._limit = 4 * jobs  # frames in flight: bounded memory
        if jobs > 1:
            self._pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context('spawn'),
                                             initializer=torch.set_num_threads, initargs=(1,))

    def write(self, image: np.ndarray, windows: np.ndarray, paths: list[Path]) -> None:
        if self._pool is None:
            _cut_and_write(image, windows, self.crop, paths)
            return
        self._pending.append(self._pool.submit(_cut_and_write, image, windows, self.crop, paths))
        while len(self._pending) > self._limit:
            self._pending.popleft().result()  # re-raises a worker's error here

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)


def _cut_and_write(image: np.ndarray, windows: np.ndarray, crop: int, paths: list[Path]) -> None:
    pixels = crop_pixels(frame_to_device(image, torch.device('cpu')), windows, crop)
    pixels = pixels.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    for path, window in zip(paths, pixels, strict=True):
        write_rgb(path, window)


def _write_windows(out: Path, writer: _CropWriter, image: np.ndarray, grid: np.ndarray, chosen,
                   rng, items: list[CaptionedImage]) -> None:
    """
    Append the `chosen` WindowCaptions to `items` and have `writer` cut them.

    Tool windows get a random TOOL_CAPTIONS template.
    """
    if not chosen:
        return
    paths = []
    for _, caption, label in chosen:
        if label:
            caption = TOOL_CAPTIONS[int(rng.integers(len(TOOL_CAPTIONS)))].replace('{}', label)
        paths.append(out / 'images' / f'{len(items):06d}.png')
        items.append(CaptionedImage(paths[-1], caption, label))
    writer.write(image, grid[[c.index for c in chosen]], paths)


def make_scenes(out: Path, count: int, blank: int, seed: int) -> list[AnnotatedScene]:
    """`count` scenes with 1–3 tools and `blank` empty benches, COCO-style annotations."""
    rng = np.random.default_rng(seed)
    height, width = FRAME_SIZE
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
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('kind', choices=('crops', 'scenes', 'hard'))
    parser.add_argument('out', type=Path)
    parser.add_argument('--count', type=int, required=True)
    parser.add_argument('--blank', type=int, default=0, help='scenes: empty benches to add')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--crop', type=int, default=DEMO_SIZE.image_size,
                        help="crops: side in pixels (the model's input size)")
    parser.add_argument('--jobs', type=int, default=len(os.sched_getaffinity(0)),
                        help='crops: processes that cut and write crops (default: one per '
                             'CPU); the data set does not depend on it')
    parser.add_argument('--model', help='hard: the model whose mistakes are mined')
    parser.add_argument('--params', type=Path, default=DEMO_PARAMS,
                        help='crops, hard: ROS parameter file whose windows are cut (hard: '
                             'and whose labels and prompts decide a window; default: '
                             'config/demo.yaml)')
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.kind == 'crops':
        make_crops(args.out, args.count, args.seed, args.crop,
                   settings_from_file(args.params).windows, jobs=args.jobs)
    elif args.kind == 'scenes':
        make_scenes(args.out, args.count, args.blank, args.seed)
    else:
        if not args.model:
            parser.error('hard needs --model')
        from clip_perception.engine.detector import ZeroShotDetector
        from clip_perception.engine.model_loading import load_clip
        detector = ZeroShotDetector(load_clip(resolve_model(args.model), 'cpu'),
                                    settings_from_file(args.params))
        make_hard_crops(args.out, detector, args.count, args.seed)


if __name__ == '__main__':
    main()
