"""
Data formats the trainer and the evaluator read (and a user's real data can use).

Image-text pairs — a folder with `captions.jsonl`, one JSON object per line:

    {"image": "images/000123.png", "caption": "a photo of a hammer.", "label": "hammer"}

`image` is relative to the folder; `label` is optional (the evaluator needs it:
a label name, or "" for background).

Detection scenes — a folder with a COCO-style `annotations.json`:

    {"images": [{"id": 1, "file_name": "scenes/000001.png", "width": 320, "height": 240}],
     "categories": [{"id": 1, "name": "hammer"}, ...],
     "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [x, y, w, h]}]}

`bbox` is COCO's [x, y, width, height] in pixels; images without annotations are
empty scenes (false-positive checks).
"""
from dataclasses import dataclass
import json
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class CaptionedImage:
    path: Path
    caption: str
    label: str | None = None


@dataclass(frozen=True)
class AnnotatedScene:
    path: Path
    width: int
    height: int
    objects: tuple[tuple[str, tuple[float, float, float, float]], ...]  # (label, xyxy)


class DatasetError(ValueError):
    """A data folder or file that cannot be read as what it should be; the text says why."""


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as H×W×3 uint8 RGB; DatasetError when missing or not an image."""
    if not Path(path).is_file():
        raise DatasetError(f'no image file at {path}')
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f'cannot decode image {path} (damaged, or not an image)')
    return np.ascontiguousarray(image[:, :, ::-1])


def write_rgb(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(pixels[:, :, ::-1])):
        raise OSError(f'cannot write {path}')


def _data_file(folder: Path, name: str, maker: str) -> Path:
    """Return folder/name; DatasetError says what is missing and which command makes it."""
    if not folder.is_dir():
        raise DatasetError(f'no folder at {folder}')
    path = folder / name
    if not path.is_file():
        raise DatasetError(f'no {name} in {folder} (python -m clip_perception.make_dataset '
                           f'{maker} makes such a folder)')
    return path


def read_captions(folder: Path) -> list[CaptionedImage]:
    folder = Path(folder)
    items = []
    with open(_data_file(folder, 'captions.jsonl', 'crops')) as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                items.append(CaptionedImage(folder / record['image'], record['caption'],
                                            record.get('label')))
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise DatasetError(f'{folder / "captions.jsonl"}:{number}: not a caption record '
                                   f'({type(error).__name__}: {error})') from None
    return items


def write_captions(folder: Path, items: list[CaptionedImage]) -> None:
    folder = Path(folder)
    with open(folder / 'captions.jsonl', 'w') as out:
        for item in items:
            record = {'image': str(Path(item.path).relative_to(folder)), 'caption': item.caption}
            if item.label is not None:
                record['label'] = item.label
            out.write(json.dumps(record) + '\n')


def read_scenes(folder: Path) -> list[AnnotatedScene]:
    """Read a COCO-style scene folder; DatasetError says what is missing or malformed."""
    folder = Path(folder)
    path = _data_file(folder, 'annotations.json', 'scenes')
    try:
        document = json.loads(path.read_text())
        names = {c['id']: c['name'] for c in document['categories']}
        objects: dict[int, list] = {image['id']: [] for image in document['images']}
        for ann in document['annotations']:
            x, y, w, h = ann['bbox']
            objects[ann['image_id']].append((names[ann['category_id']], (x, y, x + w, y + h)))
        scenes = [AnnotatedScene(folder / image['file_name'], image['width'], image['height'],
                                 tuple(objects[image['id']])) for image in document['images']]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise DatasetError(f'{path}: not a COCO annotation file ({type(error).__name__}: '
                           f'{error})') from None
    if not scenes:
        raise DatasetError(f'{path} lists no images')
    return scenes


def write_scenes(folder: Path, scenes: list[AnnotatedScene], categories) -> None:
    folder = Path(folder)
    category_ids = {name: index + 1 for index, name in enumerate(categories)}
    images, annotations = [], []
    for image_id, scene in enumerate(scenes, 1):
        images.append({'id': image_id, 'file_name': str(Path(scene.path).relative_to(folder)),
                       'width': scene.width, 'height': scene.height})
        for label, (x0, y0, x1, y1) in scene.objects:
            annotations.append({'id': len(annotations) + 1, 'image_id': image_id,
                                'category_id': category_ids[label],
                                'bbox': [x0, y0, x1 - x0, y1 - y0]})
    document = {'images': images, 'annotations': annotations,
                'categories': [{'id': i, 'name': n} for n, i in category_ids.items()]}
    (folder / 'annotations.json').write_text(json.dumps(document, indent=1))
