"""
Engine benchmark: the batched engine against the seed-style loop, same process.

Model: the ViT-B/32 architecture of openai/clip-vit-base-patch32 with random
weights (same compute as the released weights, no download). Both sides see
the same frame and the same windows:

- seed loop: per window, crop with numpy, CLIPImageProcessor (PIL), one
  get_image_features call, then scoring against cached label embeddings;
- engine: ZeroShotDetector.detect (one device upload, batched crops, one
  chunked forward pass, grouping and NMS).

Prints crops/s and frames/s of both and, last, `engine_vs_seed_loop_speedup: X.XX`
(baseline time / engine time).

    python bench/bench_engine.py                      # CPU, fp32
    python bench/bench_engine.py --device cuda --precision fp16
"""
import argparse
import statistics
import time

from clip_perception.engine.detector import DetectorSettings, ZeroShotDetector
from clip_perception.engine.encoder import (CLIP_MEAN, CLIP_STD, ClipEncoder, ImageSettings,
                                            projected)
from clip_perception.engine.model_loading import resolve_device, resolve_precision
from clip_perception.engine.scoring import class_logits
from clip_perception.engine.sliding_windows.grid import window_grid
from clip_perception.tools.model_building import (build_clip, build_tokenizer, default_corpus,
                                                  VIT_B_32)
import numpy as np
import torch

# ViT-B/32 image tower: ~4.4 GFLOPs per 224² crop (multiply-add = 2 FLOPs).
GFLOPS_PER_CROP = 4.4


def workbench_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Return a deterministic frame with some structure (random weights make content moot)."""
    import cv2
    rng = np.random.default_rng(seed)
    frame = np.full((height, width, 3), (150, 120, 90), np.uint8)
    for _ in range(6):
        x, y = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 60))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.rectangle(frame, (x, y), (x + int(rng.integers(20, 160)), y + 30), colour, -1)
    return frame


def build_encoder(device: torch.device, dtype: torch.dtype) -> ClipEncoder:
    tokenizer = build_tokenizer(default_corpus(), vocab_size=600)
    model = build_clip(tokenizer, VIT_B_32).to(device=device, dtype=dtype).eval()
    settings = ImageSettings(resize=224, crop=224, mean=CLIP_MEAN, std=CLIP_STD)
    return ClipEncoder(model, tokenizer, settings, name='ViT-B/32 (random weights)')


def seed_loop(encoder: ClipEncoder, processor, frame: np.ndarray, windows: np.ndarray,
              class_matrix: torch.Tensor) -> np.ndarray:
    """Score the windows the seeds' way: one crop, preprocessing call and forward pass each."""
    from PIL import Image
    rows = []
    with torch.inference_mode():
        for x0, y0, x1, y1 in windows:
            crop = Image.fromarray(frame[y0:y1, x0:x1])
            pixels = processor(images=crop, return_tensors='pt')['pixel_values']
            pixels = pixels.to(device=encoder.device, dtype=encoder.dtype)
            features = projected(encoder.model.get_image_features(pixel_values=pixels)).float()
            features = torch.nn.functional.normalize(features, dim=-1)
            rows.append(class_logits(features, class_matrix, encoder.logit_scale).softmax(-1))
    return torch.cat(rows).cpu().numpy()


def timed(function, repeats: int, synchronize) -> float:
    """Median wall time of `repeats` calls after one warm-up call."""
    function()
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--precision', default='auto')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--max-batch', type=int, default=64)
    parser.add_argument('--cameras', type=int, default=1,
                        help='frames per engine call (several cameras batched together)')
    parser.add_argument('--skip-seed-loop', action='store_true',
                        help='engine only (for large GPU runs)')
    parser.add_argument('--quick', action='store_true',
                        help='one repeat on a 320x240 frame: shows the command works')
    args, _ = parser.parse_known_args()  # `make bench` passes every script the same options
    if args.quick:
        args.repeats, args.width, args.height = 1, 320, 240

    device = resolve_device(args.device)
    dtype = resolve_precision(args.precision, device)
    torch.manual_seed(0)
    encoder = build_encoder(device, dtype)
    settings = DetectorSettings(max_batch=args.max_batch)
    detector = ZeroShotDetector(encoder, settings)
    frame = workbench_frame(args.height, args.width)
    windows = window_grid(args.height, args.width, settings.windows)
    crops_per_frame = len(windows) + 1  # + the whole-image classification crop

    def synchronize():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    print(f'model: ViT-B/32 architecture, random weights; device {device}, '
          f'{str(dtype).removeprefix("torch.")}, torch threads {torch.get_num_threads()}')
    print(f'frame: {args.width}x{args.height}, windows: {len(windows)} '
          f'(scales {settings.windows.scales}, overlap {settings.windows.overlap}, '
          f'+ full frame), max_batch {args.max_batch}')

    frames = [frame] * args.cameras
    engine_s = timed(lambda: detector.detect_batch(frames), args.repeats, synchronize)
    engine_per_frame = engine_s / args.cameras
    print(f'engine:    {1 / engine_per_frame:8.3f} frames/s  '
          f'{crops_per_frame / engine_per_frame:9.1f} crops/s  ({args.cameras} camera(s) '
          f'per call)')
    if device.type == 'cuda':
        achieved = crops_per_frame / engine_per_frame * GFLOPS_PER_CROP / 1000.0
        print(f'engine image-tower throughput: {achieved:.1f} TFLOP/s')
    if args.skip_seed_loop:
        return

    from transformers import CLIPImageProcessor
    processor = CLIPImageProcessor(size={'shortest_edge': 224},
                                   crop_size={'height': 224, 'width': 224})
    class_matrix = detector.class_embeddings().matrix
    all_windows = np.concatenate([windows, windows[:1]])  # same crop count as the engine
    seed_s = timed(lambda: seed_loop(encoder, processor, frame, all_windows, class_matrix),
                   args.repeats, synchronize)
    print(f'seed loop: {1 / seed_s:8.3f} frames/s  {crops_per_frame / seed_s:9.1f} crops/s')
    print(f'engine_vs_seed_loop_speedup: {seed_s / engine_per_frame:.2f}')


if __name__ == '__main__':
    main()
