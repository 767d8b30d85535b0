"""
Search a rosbag2 file by text (where does it show a tape measure?).

    python -m clip_perception.search BAG "tape measure" [--top 5] [--model DIR]
        [--params FILE] [--topic TOPIC] [--sheet matches.png] [--index auto]
    python -m clip_perception.search --store URI "tape measure" [--robot NAME] [--topic T]

Every image of the bag (sensor_msgs/Image, or --topic) goes through the detector
as the node runs it (parameters file; the bundled demo model and config/demo.yaml
by default), its regions into a memory of frames like the node's, and the query
is ranked as the node's ~/find ranks it: one line per match, best first, then
a contact sheet PNG of the matches with their boxes drawn.

--store: a memory store instead (a node's memory_store, or bags indexed with
`python -m clip_perception.index`): the answers name the robot and the run (bag);
a store keeps no pixels, so no contact sheet.

--index: the memory is searched exactly (brute force) below vector_index.FAISS_FROM
regions; above, a faiss IVF index shortlists the frames first (auto), or the kind
named here.
"""
import argparse
import os
from pathlib import Path
import sys

from clip_perception.engine.detector import DetectorSettings, ZeroShotDetector
from clip_perception.engine.localizers import localizer, REGION_LOCALIZERS
from clip_perception.engine.memory import (FrameMemory, MemorySettings, query_label,
                                           StoredFrame)
from clip_perception.engine.memory_store import MilvusStore, StoreError, StoreSettings
from clip_perception.engine.model_loading import load_encoder
from clip_perception.engine.vector_index import choose_kind, KINDS, VectorIndex
from clip_perception.ros.image_conversion import frame_from_raw
from clip_perception.ros.messages import stamp_ns
from clip_perception.ros.package_files import resolve_model
from clip_perception.ros.rosbag_io import bag_images
from clip_perception.tools.assets import DEMO_MODEL, DEMO_PARAMS
from clip_perception.tools.cli import (CliError, existing_path, one_line_errors,
                                       read_settings, writable_file)
import cv2
import numpy as np

# A shortlist keeps the frames of this many best regions per requested match.
SHORTLIST_PER_MATCH = 50


def region_settings(params: Path, model: str | None) -> tuple[DetectorSettings, str]:
    """
    Read a parameters file for a search: its settings and the model to load.

    The model: `model`, else the file's, else the demo model. CliError when the
    file is wrong or its localizer keeps no region embeddings.
    """
    settings, values = read_settings(params)
    if not localizer(settings.localizer).keeps_regions:
        raise CliError(f'localizer {settings.localizer} keeps no region embeddings; use one '
                       f'of {", ".join(REGION_LOCALIZERS)}')
    return settings, resolve_model(model or values.get('model') or str(DEMO_MODEL))


def region_detector(params: Path, model: str | None, device: str = 'auto') -> ZeroShotDetector:
    """Load the detector a search runs (region_settings says which)."""
    settings, model = region_settings(params, model)
    return ZeroShotDetector(load_encoder(model, device, 'auto', settings.localizer), settings)


def detect_bag(detector: ZeroShotDetector, bag: Path, topic: str | None = None,
               batch: int = 4, skipped: dict[str, int] | None = None):
    """
    Run the detector on every image of a bag, as the node does, keeping regions.

    Yields (topic, sensor_msgs Image, Frame, FrameResult) in the bag's order. An
    image that cannot be used is left out and counted in `skipped` (why -> count).
    """
    waiting = []
    skipped = {} if skipped is None else skipped

    def flush():
        results = detector.detect_batch([frame.pixels for _, _, frame in waiting],
                                        bgr=[frame.bgr for _, _, frame in waiting],
                                        keep_regions=True)
        yield from ((*item, result) for item, result in zip(waiting, results))
        waiting.clear()

    for name, msg in bag_images(bag, topic):
        try:
            frame = frame_from_raw(msg.height, msg.width, msg.encoding, msg.step, msg.data)
            detector.check_frame(*frame.pixels.shape[:2])
        except ValueError as error:  # ImageError too: a bad image is left out, not fatal
            skipped[str(error)] = skipped.get(str(error), 0) + 1
            continue
        waiting.append((name, msg, frame))
        if len(waiting) == batch:
            yield from flush()
    if waiting:
        yield from flush()


def stored_frame(topic: str, msg, result, run: str = '') -> StoredFrame:
    """Make the memory's record of one detected image."""
    return StoredFrame(topic, stamp_ns(msg.header), msg.header.frame_id, result.regions,
                       run=run)


def remember_bag(detector: ZeroShotDetector, bag: Path, topic: str | None = None,
                 batch: int = 4) -> tuple[FrameMemory, dict]:
    """Every image of the bag into a memory; also {(topic, stamp_ns): pixels} for drawing."""
    memory = FrameMemory(MemorySettings(max_frames=10**9, period_sec=0.0, max_bytes=2 ** 62))
    pictures, skipped = {}, {}
    for name, msg, frame, result in detect_bag(detector, bag, topic, batch, skipped):
        stored = stored_frame(name, msg, result)
        memory.add(stored)
        pictures[name, stored.stamp_ns] = frame.pixels[..., ::-1] if frame.bgr else frame.pixels
    for why, count in skipped.items():
        print(f'{count} image(s) left out: {why}', file=sys.stderr)
    return memory, pictures


def search(detector: ZeroShotDetector, memory: FrameMemory, query: str, top: int,
           index: str = 'auto'):
    """Rank the memory's frames for `query` as the node's ~/find does; best first."""
    classes = detector.query_embeddings(query_label(query))
    frames = memory.frames
    kind = choose_kind(memory.num_regions) if index == 'auto' else index
    if kind != 'exact':
        vectors = np.concatenate([f.regions.embeddings.float().numpy() for f in frames])
        owner = np.repeat(np.arange(len(frames)), [len(f.regions.boxes) for f in frames])
        _, rows = VectorIndex(vectors, kind).search(classes.matrix[:1], top * SHORTLIST_PER_MATCH)
        keep = sorted(set(owner[rows[0][rows[0] >= 0]].tolist()))
        memory = FrameMemory(memory.settings)
        for i in keep:
            memory.add(frames[i])
    return memory.search(classes.matrix, detector.encoder.logit_scale, top)


def contact_sheet(matches, pictures: dict, query: str, columns: int = 5) -> np.ndarray:
    """Draw the matches' frames side by side (RGB), each with its box, rank, score, stamp."""
    tiles = []
    for rank, match in enumerate(matches, 1):
        frame = match.frame
        tile = np.ascontiguousarray(pictures[frame.camera, frame.stamp_ns])
        scale = 240 / tile.shape[0]
        tile = cv2.resize(tile, (round(tile.shape[1] * scale), 240))
        x0, y0, x1, y1 = (round(v * scale) for v in match.box)
        cv2.rectangle(tile, (x0, y0), (x1, y1), (255, 40, 40), 2)
        caption = f'{rank}. {match.score:.2f}  t={frame.stamp_ns / 1e9:.2f}'
        tile = cv2.copyMakeBorder(tile, 0, 22, 0, 0, cv2.BORDER_CONSTANT, value=(255,) * 3)
        cv2.putText(tile, caption, (4, tile.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    width = max(t.shape[1] for t in tiles)
    tiles = [cv2.copyMakeBorder(t, 0, 0, 0, width - t.shape[1], cv2.BORDER_CONSTANT,
                                value=(255,) * 3) for t in tiles]
    tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % columns)
    rows = [np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)]
    title = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
    cv2.putText(title, f'"{query}"', (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.vstack([title, *rows])


def print_matches(matches) -> None:
    """One line per match, best first: when and where (robot, bag, topic) and the box."""
    for rank, match in enumerate(matches, 1):
        frame = match.frame
        sec, nanosec = divmod(frame.stamp_ns, 10**9)
        box = ', '.join(f'{v:.0f}' for v in match.box)
        where = ''.join(f'{what} {name} ' for what, name in (('robot', frame.robot),
                                                             ('run', frame.run)) if name)
        print(f'{rank}. {where}stamp {sec}.{nanosec:09d} frame_id {frame.frame_id} topic '
              f'{frame.camera} box [{box}] score {match.score:.3f}')


def search_store(detector: ZeroShotDetector, args) -> int:
    """Rank the frames of a memory store (an indexed archive, a fleet's memory)."""
    classes = detector.query_embeddings(query_label(args.query))
    try:
        store = MilvusStore(StoreSettings(args.store, args.token, max_rows=0),
                            classes.matrix.shape[1])
    except StoreError as error:
        raise CliError(str(error)) from None
    try:
        matches = store.search(classes.matrix, detector.encoder.logit_scale, args.top,
                               robot=args.robot, camera=args.topic or '')
    finally:
        store.close()
    print(f'{args.store}: best frames for {args.query!r}, best first:')
    print_matches(matches)
    if not matches:
        print('no matches')
    return 0


@one_line_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('bag', nargs='?', type=Path,
                        help='rosbag2 directory (or file); none with --store')
    parser.add_argument('query', help='what to look for, e.g. "tape measure"')
    parser.add_argument('--top', type=int, default=5, help='matches, at most one per frame')
    parser.add_argument('--model', default=None,
                        help="CLIP model (default: the parameters file's, else the demo model)")
    parser.add_argument('--params', type=Path, default=DEMO_PARAMS, help='parameters file')
    parser.add_argument('--topic', default=None, help='image topic (default: all images)')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--index', choices=('auto',) + KINDS, default='auto')
    parser.add_argument('--sheet', type=Path, default=Path('search_matches.png'),
                        help='contact sheet PNG of the matches')
    parser.add_argument('--store', default=None,
                        help='search a memory store instead of a bag: milvus:PATH.db or '
                             'http(s)://HOST:19530 (python -m clip_perception.index fills one)')
    parser.add_argument('--token', default=os.environ.get('MILVUS_TOKEN', ''),
                        help="a store server's token (default: $MILVUS_TOKEN)")
    parser.add_argument('--robot', default='', help="with --store: this robot's frames only")
    args = parser.parse_args(argv)
    if not args.query.strip() or args.top < 1:
        parser.error('the query must not be blank and --top must be >= 1')
    if (args.bag is None) == (args.store is None):
        parser.error('give a bag or --store URI (one of them)')
    if args.store:
        return search_store(region_detector(args.params, args.model, args.device), args)
    existing_path(args.bag, 'rosbag2')
    writable_file(args.sheet)
    detector = region_detector(args.params, args.model, args.device)
    memory, pictures = remember_bag(detector, args.bag, args.topic)
    if not len(memory):
        print(f'no usable sensor_msgs/Image messages in {args.bag}', file=sys.stderr)
        return 1
    matches = search(detector, memory, args.query, args.top, args.index)
    print(f'{len(memory)} frames, {memory.num_regions} regions searched for '
          f'{args.query!r}; best first:')
    print_matches(matches)
    if not matches:
        print('no matches: no contact sheet written')
    elif cv2.imwrite(str(args.sheet), contact_sheet(matches, pictures, args.query)[..., ::-1]):
        print(f'contact sheet: {args.sheet}')
    else:
        raise CliError(f'cannot write the contact sheet {args.sheet} (a .png or .jpg name?)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
