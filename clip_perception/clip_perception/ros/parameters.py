"""
The node's parameters, declared once: name, default, type, range, description.

The node declares exactly these (with ROS descriptors), config/workbench.yaml
sets them, and the README table lists them; a test checks all three agree.
Defaults and allowed values of what the engine uses come from the engine.
This module has no ROS imports so the table can be read anywhere (the tools
read parameter files with it).
"""
import array
from dataclasses import dataclass, replace

from clip_perception.engine.detector import CLASSIFICATIONS, DetectorSettings, REFERENCE_FRAME
from clip_perception.engine.localizers import LOCALIZERS
from clip_perception.engine.memory import MemorySettings
from clip_perception.engine.model_loading import DEFAULT_MODEL, PRECISIONS
from clip_perception.engine.prompts import validate_prompts
from clip_perception.engine.sliding_windows.grid import WindowSpec
from clip_perception.engine.sliding_windows.grouping import REFINEMENTS
from clip_perception.engine.tracking import TrackerSettings

_DETECTOR = DetectorSettings()
_MEMORY = MemorySettings()
_TRACKER = TrackerSettings()
_WINDOWS = WindowSpec()


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: object
    kind: str  # 'string', 'string_array', 'double', 'double_array', 'integer', 'bool'
    description: str
    read_only: bool = False  # a change needs a restart
    limits: tuple | None = None  # (min, max) inclusive, for double and integer
    choices: tuple[str, ...] = ()


PARAMETERS = (
    ParameterSpec('model', DEFAULT_MODEL, 'string',
                  'Hugging Face id, directory, path in the package share or '
                  'package://pkg/path of a CLIP model (safetensors only)',
                  read_only=True),
    ParameterSpec('device', 'auto', 'string', 'auto (CUDA when available), cpu, cuda or cuda:N',
                  read_only=True),
    ParameterSpec('precision', 'auto', 'string',
                  'auto (fp16 on CUDA, fp32 on CPU), fp32, fp16 or bf16', read_only=True,
                  choices=PRECISIONS),
    ParameterSpec('labels', list(_DETECTOR.labels), 'string_array',
                  'Object labels; each becomes a class_id (the label text)'),
    ParameterSpec('prompt_templates', list(_DETECTOR.prompt_templates), 'string_array',
                  'Prompt ensemble; {} is replaced by the label'),
    ParameterSpec('background_prompts', list(_DETECTOR.background_prompts), 'string_array',
                  'Whole sentences that compete with the labels so empty windows are '
                  'rejected'),
    ParameterSpec('localizer', _DETECTOR.localizer, 'string',
                  'How boxes are made: windows (sliding windows, each classified), dense '
                  '(patch embeddings against the labels, one pass), gradcam (Grad-CAM of the '
                  "frame's label scores, one pass) or owlvit (an OWL-ViT/OWLv2 detection "
                  'model as `model`); dense and gradcam also publish ~/heatmap',
                  read_only=True, choices=LOCALIZERS),
    ParameterSpec('map_size', _DETECTOR.map_size, 'integer',
                  "dense, gradcam: the frame's shorter side in pixels as the encoder sees it "
                  "(position embeddings interpolated); 0: the model's input size",
                  limits=(0, 4096)),
    ParameterSpec('max_map_patches', _DETECTOR.max_map_patches, 'integer',
                  'dense, gradcam: most encoder patches one frame may need (map_size fixes '
                  'the shorter side, the longer one follows the aspect ratio); a map_size '
                  f'that needs more on a {REFERENCE_FRAME[1]}x{REFERENCE_FRAME[0]} frame is '
                  'refused, a frame that needs more is rejected', limits=(1, 1_000_000)),
    ParameterSpec('heatmap_threshold', _DETECTOR.heatmap_threshold, 'double',
                  "gradcam: a box is a region where a label's map reaches this fraction of "
                  'its peak', limits=(0.0, 1.0)),
    ParameterSpec('window_scales', list(_WINDOWS.scales), 'double_array',
                  'Window sides: <= 1 a fraction of the short side, > 1 pixels'),
    ParameterSpec('window_aspect_ratios', list(_WINDOWS.aspect_ratios), 'double_array',
                  'Window width/height ratios, each used at every scale'),
    ParameterSpec('window_overlap', _WINDOWS.overlap, 'double',
                  'Overlap of neighbouring windows of one size', limits=(0.0, 0.95)),
    ParameterSpec('score_threshold', _DETECTOR.score_threshold, 'double',
                  'Minimum label probability (against labels and background) of a window to '
                  'propose an object',
                  limits=(0.0, 1.0)),
    ParameterSpec('nms_iou', _DETECTOR.nms_iou, 'double',
                  'IoU above which same-label windows are one object', limits=(0.0, 1.0)),
    ParameterSpec('max_detections', _DETECTOR.max_detections, 'integer',
                  'Most detections per image', limits=(1, 1000)),
    ParameterSpec('box_refinement', _DETECTOR.box_refinement, 'string',
                  'merge (weighted mean of overlapping windows), intersect (intersection '
                  "of the object's windows) or none (best window)",
                  choices=REFINEMENTS),
    ParameterSpec('box_regression', _DETECTOR.box_regression, 'bool',
                  "Move each window onto its object with the model's box regressor "
                  '(box_regressor.safetensors in the model directory) before refinement; '
                  'no effect for a model without one'),
    ParameterSpec('classification', _DETECTOR.classification, 'string',
                  'Source of the classification scores: windows (per label the pooled '
                  'probability of its best window, 0..1 each: is it in view?) or whole_image '
                  '(softmax over the labels of the whole frame; scores sum to 1; not with '
                  'localizer owlvit)',
                  choices=CLASSIFICATIONS),
    ParameterSpec('max_batch', _DETECTOR.max_batch, 'integer',
                  'Most crops per forward pass (halved automatically on CUDA OOM)',
                  limits=(1, 4096)),
    ParameterSpec('max_windows', _DETECTOR.max_windows, 'integer',
                  'Most windows one frame may ask for; a window setting that needs more on a '
                  f'{REFERENCE_FRAME[1]}x{REFERENCE_FRAME[0]} frame is refused, a frame that '
                  'needs more is rejected', limits=(1, 1_000_000)),
    ParameterSpec('max_image_pixels', 4096 * 4096, 'integer',
                  'Larger images are downscaled before inference (boxes stay in input '
                  'pixels)', limits=(1024, 2 ** 31 - 1)),
    ParameterSpec('image_reliability', 'best_effort', 'string',
                  'Input QoS reliability: best_effort or reliable (depth 1)', read_only=True,
                  choices=('best_effort', 'reliable')),
    ParameterSpec('image_topics', ['image'], 'string_array',
                  'Image topics, batched together (several cameras); remap `image` for one',
                  read_only=True),
    ParameterSpec('depth_topics', [], 'string_array',
                  'Depth images aligned to the image_topics, in their order (16UC1 in '
                  'millimetres or 32FC1 in metres); empty: no 3D output',
                  read_only=True),
    ParameterSpec('camera_info_topics', [], 'string_array',
                  'sensor_msgs/CameraInfo of the image_topics, in their order (with '
                  'depth_topics)', read_only=True),
    ParameterSpec('depth_slop', 0.05, 'double',
                  'Seconds by which a depth image or camera info may be stamped off its '
                  'colour frame', limits=(0.0, 10.0)),
    ParameterSpec('image_transport', 'raw', 'string',
                  'raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage on '
                  '<topic>/compressed)', read_only=True, choices=('raw', 'compressed')),
    ParameterSpec('publish_debug_image', True, 'bool',
                  'Publish ~/debug_image (drawn only while someone subscribes)'),
    ParameterSpec('autostart', True, 'bool',
                  'Configure and activate at start-up (false: wait for a lifecycle manager)',
                  read_only=True),
    ParameterSpec('enabled', True, 'bool',
                  'Run inference; false pauses it and keeps the subscriptions '
                  '(also the ~/enable service)'),
    ParameterSpec('watchdog_sec', 30.0, 'double',
                  '/diagnostics reports ERROR when frames have waited this many seconds '
                  'without the inference thread finishing one (stalled or ended)',
                  limits=(1.0, 86400.0)),
    ParameterSpec('tracking', False, 'bool',
                  'Give each detection a track id (Detection2D.id) that stays with its object '
                  'across frames, per camera (ByteTrack-style, two association passes)'),
    ParameterSpec('track_low_score', _TRACKER.low_score, 'double',
                  'tracking: what is found from this score up to score_threshold beyond the '
                  'detections (selected apart from them) only continues a track seen in the '
                  'previous frame (then it is published)',
                  limits=(0.0, 1.0)),
    ParameterSpec('track_match_iou', _TRACKER.match_iou, 'double',
                  "tracking: least IoU between a track's predicted box and a detection",
                  limits=(0.01, 1.0)),
    ParameterSpec('track_min_hits', _TRACKER.min_hits, 'integer',
                  'tracking: frames in a row a new track must be matched before its detections '
                  "are published (2: ByteTrack's activation; a one-frame false detection "
                  'starts no track); 1 publishes every new track at once', limits=(1, 100)),
    ParameterSpec('track_max_missed', _TRACKER.max_missed, 'integer',
                  'tracking: frames a track survives without a detection before its id retires',
                  limits=(0, 10_000)),
    ParameterSpec('track_max_tracks', _TRACKER.max_tracks, 'integer',
                  'tracking: most tracks kept per camera (at least max_detections); the ones '
                  'unmatched longest retire first', limits=(1, 100_000)),
    ParameterSpec('memory', True, 'bool',
                  "Keep recent frames' regions and embeddings for the ~/find service "
                  '(localizers windows and dense)'),
    ParameterSpec('memory_frames', _MEMORY.max_frames, 'integer',
                  'Most frames the memory keeps (all cameras); the oldest are forgotten first',
                  limits=(1, 100_000)),
    ParameterSpec('memory_max_mb', _MEMORY.max_bytes // 2 ** 20, 'integer',
                  "Most MiB the stored frames' embeddings and boxes take (2 bytes per "
                  'embedding value: 54 windows of CLIP ViT-B/32 take 0.06 MiB a frame); the '
                  'oldest are forgotten first',
                  limits=(1, 65536)),
    ParameterSpec('memory_period', _MEMORY.period_sec, 'double',
                  "Seconds (on the node's clock) between two stored frames of one camera; "
                  '0: every processed frame', limits=(0.0, 3600.0)),
    ParameterSpec('memory_max_age', _MEMORY.max_age_sec, 'double',
                  "Frames stored this many seconds ago (on the node's clock) are forgotten; "
                  '0: only memory_frames and memory_max_mb limit', limits=(0.0, 1e7)),
    ParameterSpec('memory_store', '', 'string',
                  "Where ~/find's memory lives: empty, in the node (memory_frames, "
                  'memory_max_mb); milvus:PATH.db, a Milvus Lite file on the robot; '
                  'http(s)://HOST:19530, a Milvus server shared by a fleet', read_only=True),
    ParameterSpec('memory_store_token', '', 'string',
                  'memory_store on a server: its token (user:password or an API key)',
                  read_only=True),
    ParameterSpec('memory_robot', '', 'string',
                  "memory_store: this robot's name on its rows (~/find's robot filter); "
                  "empty: the node's namespace, or its name at the root", read_only=True),
    ParameterSpec('memory_store_rows', 1_000_000, 'integer',
                  'memory_store: most rows (regions) this robot keeps there; its oldest are '
                  'deleted first (memory_max_age applies too)', read_only=True,
                  limits=(1, 1_000_000_000)),
)

BY_NAME = {spec.name: spec for spec in PARAMETERS}

# The parameters that shape detection, as DetectorSettings fields and WindowSpec fields.
_SETTINGS_FIELDS = ('labels', 'prompt_templates', 'background_prompts', 'score_threshold',
                    'nms_iou', 'max_detections', 'max_batch', 'box_refinement',
                    'box_regression', 'max_windows', 'classification', 'localizer',
                    'map_size', 'heatmap_threshold', 'max_map_patches')
_WINDOW_FIELDS = {'window_scales': 'scales', 'window_aspect_ratios': 'aspect_ratios',
                  'window_overlap': 'overlap'}
DETECTOR_PARAMETERS = _SETTINGS_FIELDS + tuple(_WINDOW_FIELDS)
TRACKING_PARAMETERS = ('tracking', 'track_low_score', 'track_match_iou', 'track_max_missed',
                       'track_max_tracks', 'track_min_hits')
# What shapes the stream of detections: the detector and the tracker (stream_settings).
STREAM_PARAMETERS = DETECTOR_PARAMETERS + TRACKING_PARAMETERS


def memory_settings(values: dict) -> MemorySettings:
    """Values of memory_frames, memory_period, memory_max_age, memory_max_mb -> MemorySettings."""
    return MemorySettings(max_frames=values['memory_frames'], period_sec=values['memory_period'],
                          max_age_sec=values['memory_max_age'],
                          max_bytes=int(values['memory_max_mb'] * 2 ** 20))


def check_choices(values: dict) -> None:
    """
    Raise ValueError naming the first value that is not one of its choices.

    For the parameters the engine does not check itself (detector_settings does).
    """
    for name, value in values.items():
        choices = BY_NAME[name].choices
        if choices and value not in choices:
            raise ValueError(f'{name} must be one of {", ".join(choices)}, not {value!r}')


_ELEMENT_TYPES = {'string_array': str, 'double_array': (int, float)}


def check_types(values: dict) -> None:
    """
    Raise ValueError naming the first value whose type is not its parameter's.

    rclpy checks the values it is given; a parameters file read without it (the
    offline tools) is checked here: `labels: hammer` is not a list of labels.
    """
    for name, value in values.items():
        spec = BY_NAME.get(name)
        if spec is None:
            continue
        if spec.kind in _ELEMENT_TYPES:
            if not isinstance(value, (list, tuple, array.array)) or not all(
                    isinstance(v, _ELEMENT_TYPES[spec.kind]) and not isinstance(v, bool)
                    for v in value):
                raise ValueError(f'{name} must be a list of '
                                 f'{"strings" if spec.kind == "string_array" else "numbers"}, '
                                 f'got {value!r}')
        elif spec.kind == 'double' and (isinstance(value, bool) or
                                        not isinstance(value, (int, float))):
            raise ValueError(f'{name} must be a number, got {value!r}')
        elif spec.kind == 'integer' and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f'{name} must be an integer, got {value!r}')
        elif spec.kind == 'bool' and not isinstance(value, bool):
            raise ValueError(f'{name} must be true or false, got {value!r}')
        elif spec.kind == 'string' and not isinstance(value, str):
            raise ValueError(f'{name} must be a string, got {value!r}')


def detector_settings(values: dict) -> DetectorSettings:
    """Values of DETECTOR_PARAMETERS -> validated DetectorSettings; ValueError says why."""
    def plain(value):
        # rclpy gives arrays as list or array.array
        return tuple(value) if isinstance(value, (list, tuple, array.array)) else value

    check_types(values)

    windows = WindowSpec(**{field: plain(values[name]) for name, field in _WINDOW_FIELDS.items()})
    fields = {name: plain(values[name]) for name in _SETTINGS_FIELDS}
    validate_prompts(fields['labels'], fields['prompt_templates'], fields['background_prompts'])
    settings = DetectorSettings(windows=windows, **fields)
    settings.check_frame(*REFERENCE_FRAME)
    return settings


def stream_settings(values: dict) -> tuple[DetectorSettings, TrackerSettings | None]:
    """
    Values of STREAM_PARAMETERS -> the detector's settings and the tracker's (None: off).

    With tracking the detector also reports its uncertain detections, down to
    track_low_score (selected apart: the confident ones are those without tracking),
    and the tracker passes those on only where they continue a track.
    """
    settings = detector_settings(values)
    if not values['tracking']:
        return settings, None
    tracker = TrackerSettings(high_score=settings.score_threshold,
                              low_score=min(values['track_low_score'], settings.score_threshold),
                              match_iou=values['track_match_iou'],
                              max_missed=values['track_max_missed'],
                              max_tracks=max(values['track_max_tracks'],
                                             settings.max_detections),
                              min_hits=values['track_min_hits'])
    return replace(settings, uncertain_threshold=tracker.low_score), tracker


def read_parameters_file(path, node_name: str = 'clip_perception') -> dict:
    """
    Read the parameters a ROS parameter YAML gives `node_name` (`/**` entries included).

    ValueError names the file and what is wrong with it (missing, not YAML, not a
    parameters file).
    """
    import yaml
    try:
        with open(path) as stream:
            document = yaml.safe_load(stream) or {}
    except OSError as error:
        raise ValueError(f'cannot read parameters file {path}: {error.strerror}') from None
    except yaml.YAMLError as error:
        where = getattr(error, 'problem_mark', None)
        line = f' (line {where.line + 1})' if where is not None else ''
        raise ValueError(f'parameters file {path} is not valid YAML{line}: '
                         f'{getattr(error, "problem", None) or error}') from None
    values = {}
    for key in ('/**', node_name, f'/{node_name}'):
        section = document.get(key) if isinstance(document, dict) else None
        if section is None:
            continue
        if not isinstance(section, dict) or not isinstance(
                section.get('ros__parameters', {}), dict):
            raise ValueError(f'parameters file {path}: {key} needs a ros__parameters mapping')
        values.update(section.get('ros__parameters', {}))
    return values


def settings_from_file(path) -> DetectorSettings:
    """Read the DetectorSettings of a parameters file, defaults for what it leaves out."""
    values = {name: BY_NAME[name].default for name in DETECTOR_PARAMETERS}
    values.update({k: v for k, v in read_parameters_file(path).items()
                   if k in DETECTOR_PARAMETERS})
    try:
        return detector_settings(values)
    except ValueError as error:
        raise ValueError(f'parameters file {path}: {error}') from None
