"""
Search a rosbag2 file by text (where does it show a tape measure?).

    python -m clip_perception.search BAG "tape measure" [--top 5] [--model DIR]
        [--params FILE] [--topic TOPIC] [--sheet matches.png] [--index auto]

Every image of the bag (sensor_msgs/Image, or --topic) goes through the detector
as the node runs it (parameters file; the bundled demo model and config/demo.yaml
by default), its regions into a memory of frames like the node's, and the query
is ranked as the node's ~/find ranks it: one line per match, best first, then
a contact sheet PNG of the matches with their boxes drawn.

--index: the memory is searched exactly (brute force) below vector_index.FAISS_FROM
regions; above, a faiss IVF index shortlists the frames first (auto), or the kind
named here.
"""
import argparse
from pathlib import Path
import sys

from clip_perception.engine.detector import ZeroShotDetector
from clip_perception.engine.localizers import localizer, REGION_LOCALIZERS
from clip_perception.engine.memory import (FrameMemory, MemorySettings, query_label,
                                           StoredFrame)
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


def remember_bag(detector: ZeroShotDetector, bag: Path, topic: str | None = None,
                 batch: int = 4) -> tuple[FrameMemory, dict]:
    """Every image of the bag into a memory; also {(topic, stamp_ns): pixels} for drawing."""
    memory = FrameMemory(MemorySettings(max_frames=10**9, period_sec=0.0, max_bytes=2 ** 62))
    pictures, waiting = {}, []
    skipped: dict[str, int] = {}  # why -> images left out

    def flush():
        results = detector.detect_batch([frame.pixels for _, _, frame in waiting],
                                        bgr=[frame.bgr for _, _, frame in waiting],
                                        keep_regions=True)
        for (name, msg, frame), result in zip(waiting, results):
            stamp = stamp_ns(msg.header)
            memory.add(StoredFrame(name, stamp, msg.header.frame_id, result.regions))
            pictures[name, stamp] = frame.pixels[..., ::-1] if frame.bgr else frame.pixels
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
            flush()
    if waiting:
        flush()
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


@one_line_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('bag', type=Path, help='rosbag2 directory (or file)')
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
    args = parser.parse_args(argv)
    if not args.query.strip() or args.top < 1:
        parser.error('the query must not be blank and --top must be >= 1')
    existing_path(args.bag, 'rosbag2')
    settings, values = read_settings(args.params)
    if not localizer(settings.localizer).keeps_regions:
        parser.error(f'localizer {settings.localizer} keeps no region embeddings; use one of '
                     f'{", ".join(REGION_LOCALIZERS)}')
    writable_file(args.sheet)
    model = resolve_model(args.model or values.get('model') or str(DEMO_MODEL))
    detector = ZeroShotDetector(load_encoder(model, args.device, 'auto', settings.localizer),
                                settings)
    memory, pictures = remember_bag(detector, args.bag, args.topic)
    if not len(memory):
        print(f'no usable sensor_msgs/Image messages in {args.bag}', file=sys.stderr)
        return 1
    matches = search(detector, memory, args.query, args.top, args.index)
    print(f'{len(memory)} frames, {memory.num_regions} regions searched for '
          f'{args.query!r}; best first:')
    for rank, match in enumerate(matches, 1):
        frame = match.frame
        sec, nanosec = divmod(frame.stamp_ns, 10**9)
        box = ', '.join(f'{v:.0f}' for v in match.box)
        print(f'{rank}. stamp {sec}.{nanosec:09d} frame_id {frame.frame_id} topic '
              f'{frame.camera} box [{box}] score {match.score:.3f}')
    if not matches:
        print('no matches: no contact sheet written')
    elif cv2.imwrite(str(args.sheet), contact_sheet(matches, pictures, args.query)[..., ::-1]):
        print(f'contact sheet: {args.sheet}')
    else:
        raise CliError(f'cannot write the contact sheet {args.sheet} (a .png or .jpg name?)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
