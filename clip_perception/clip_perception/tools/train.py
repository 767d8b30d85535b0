"""
Contrastive training of a CLIP model on image-text pairs (symmetric InfoNCE).

    python -m clip_perception.train --data DIR --out MODEL_DIR            # from scratch
    python -m clip_perception.train --data DIR --out MODEL_DIR \
        --init openai/clip-vit-base-patch32 --lr 1e-5                    # fine-tune

--data is one or more folders in the `datasets.py` format (captions.jsonl +
images), e.g. fresh crops plus the mistakes of an earlier model
(`make_dataset hard`) to fine-tune it with --init. From
scratch, a small CLIP (`--size demo`) and a BPE tokenizer for the captions are
built here; with --init an existing model (hub id or directory) is fine-tuned.
The result is saved with save_pretrained (safetensors) plus tokenizer and
processor files, so the detector loads it through its `model` parameter.

Loss: image-text logits = exp(t) · cos, with t learnable (initialized at
ln(1/0.07), exp(t) clamped at 100); cross-entropy image→text and text→image,
averaged. Pairs with the same label (or, without labels, the same caption) in
one batch count as positives of each other instead of as negatives.

Towers (`--size`): `demo` (a 4 × 128 ViT at 48 px), `demo-wide` (6 × 192),
`demo-conv` (a ConvNeXt image tower in transformers' VisionTextDualEncoderModel),
`demo64`, `test`; all load through the node's `model` parameter.

Checkpoints: every --checkpoint-every steps the run is saved to OUT/checkpoint
(weights and optimizer in safetensors, the step, sampler and history in JSON);
`--resume` continues a stopped run from there, with the same arguments, to the
same weights an uninterrupted run reaches. `--until-step N` stops after step N
(a long recipe split over several sittings). `--minutes M` runs a time budget
instead of a step count (the schedule follows the elapsed fraction): how towers
are compared at matched CPU time.

Progressive resizing (`--low-res 32 --low-res-steps 750`): the first steps see
the images shrunk, with the position embeddings interpolated to the smaller
patch grid, so they cost less (a 48 px demo model's step at 32 px: 16 patches
instead of 36, 0.23 s instead of 0.45 s on 2 cores); the later steps, at the
model's own size, are what inference sees.
"""
import argparse
import json
import math
from pathlib import Path
import time

from clip_perception.engine.detector import DetectorSettings, ZeroShotDetector
from clip_perception.engine.encoder import (CLIP_MEAN, CLIP_STD, image_text_encoder, ImageSettings,
                                            projected)
from clip_perception.engine.model_loading import load_clip
from clip_perception.engine.preprocess import Normalizer
from clip_perception.engine.prompts import DEFAULT_PROMPT_TEMPLATES
from clip_perception.ros.package_files import resolve_model
from clip_perception.tools.checkpoint import add_run_arguments, check_resume, Checkpoint, jsonable
from clip_perception.tools.datasets import read_captions, read_rgb
from clip_perception.tools.make_dataset import BACKGROUND_CAPTIONS
from clip_perception.tools.model_building import (build_model, build_tokenizer, default_corpus,
                                                  DEMO64_SIZE, DEMO_CONV_SIZE, DEMO_SIZE,
                                                  DEMO_WIDE_SIZE, save_model_directory,
                                                  TEST_CONV_SIZE, TEST_SIZE)
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

SIZES = {'demo': DEMO_SIZE, 'demo-wide': DEMO_WIDE_SIZE, 'demo-conv': DEMO_CONV_SIZE,
         'demo64': DEMO64_SIZE, 'test': TEST_SIZE, 'test-conv': TEST_CONV_SIZE}
MAX_LOGIT_SCALE = math.log(100.0)


def symmetric_info_nce(image_embeddings, text_embeddings, logit_scale, groups):
    """
    [B, D] normalized embeddings, scalar log-temperature, [B] group ids -> loss.

    Targets: uniform over the batch entries of the same group (the diagonal when
    all groups differ, which is CLIP's loss exactly).
    """
    logits = logit_scale.clamp(max=MAX_LOGIT_SCALE).exp() * image_embeddings @ text_embeddings.T
    positives = (groups[:, None] == groups[None, :]).float()
    targets = positives / positives.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def load_images(items, size: int) -> torch.Tensor:
    """[N, 3, size, size] uint8 (images are resized to the model's input if needed)."""
    out = np.empty((len(items), size, size, 3), np.uint8)
    for index, item in enumerate(tqdm(items, desc='loading images', unit='img', leave=False)):
        image = read_rgb(item.path)
        if image.shape[:2] != (size, size):
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        out[index] = image
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


class ProbeSet:
    """
    Zero-shot crop classification on held-out pairs.

    Decided as the detector decides a window: against the labels (prompt
    ensemble) and the background captions.
    """

    def __init__(self, items, images, templates, background_captions):
        labelled = [i for i, item in enumerate(items) if item.label is not None]
        self.images = images[labelled]
        self.labels = [items[i].label for i in labelled]
        self.settings = DetectorSettings(labels=tuple(sorted({label for label in self.labels
                                                              if label})),
                                         prompt_templates=tuple(templates),
                                         background_prompts=tuple(background_captions),
                                         max_batch=256)

    def accuracy(self, model, tokenizer, image: ImageSettings) -> float:
        if not self.labels:
            return float('nan')
        model.eval()
        detector = ZeroShotDetector(image_text_encoder(model, tokenizer, image), self.settings)
        predicted, _ = detector.classify_crops(self.images)
        model.train()
        return float(np.mean([p == t for p, t in zip(predicted, self.labels)]))


def encode_image(model, pixels):
    # With gradients: the engine encodes for inference only. Pixels smaller than the
    # model's input (--low-res) see its position embeddings interpolated.
    # A convolutional tower takes any size as it is.
    size = model.config.vision_config.image_size
    resized = {'interpolate_pos_encoding': True} if (
        pixels.shape[-1] != size and model.config.model_type == 'clip') else {}
    return F.normalize(projected(model.get_image_features(pixel_values=pixels, **resized)),
                       dim=-1)


def encode_tokens(model, input_ids, attention_mask):
    return F.normalize(projected(model.get_text_features(
        input_ids=input_ids, attention_mask=attention_mask)), dim=-1)


def encode_captions(model, tokens, ids, device):
    """
    Encode the captions of a batch, each distinct caption once.

    The embeddings of captions `ids` (rows of the tokenized caption list `tokens`),
    each distinct caption encoded once: batches repeat captions (the demo data has 34,
    so a batch of 128 holds each about 4 times). The same embeddings and gradients as
    encoding every row, and a demo step is about 9% cheaper.
    """
    unique, inverse = torch.unique(ids, return_inverse=True)
    return encode_tokens(model, tokens['input_ids'][unique].to(device),
                         tokens['attention_mask'][unique].to(device))[inverse.to(device)]


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--data', type=Path, nargs='+', required=True,
                        help='training pairs folder(s), sampled as one set')
    parser.add_argument('--eval-data', type=Path, help='held-out pairs for the probe accuracy')
    parser.add_argument('--out', type=Path, required=True, help='model directory to write')
    parser.add_argument('--init', help='model to fine-tune (hub id or directory)')
    parser.add_argument('--size', choices=sorted(SIZES), default='demo',
                        help='architecture when training from scratch')
    parser.add_argument('--minutes', type=float, default=None,
                        help='a time budget instead of --steps: the schedule follows the '
                             'elapsed fraction and the run ends when it is spent')
    parser.add_argument('--logit-scale-lr', type=float, default=None,
                        help='learning rate of the temperature (default 10 × --lr)')
    parser.add_argument('--weight-decay', type=float, default=0.1)
    parser.add_argument('--eval-every', type=int, default=100)
    parser.add_argument('--low-res', type=int, default=None,
                        help='image side in pixels for the first --low-res-steps steps '
                             '(progressive resizing: cheaper early steps)')
    parser.add_argument('--low-res-steps', type=int, default=0)
    add_run_arguments(parser, steps=900, batch_size=128, lr=5e-4, warmup=50)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    if args.low_res_steps and not args.low_res:
        parser.error('--low-res-steps needs --low-res')
    check_resume(parser, args)
    return parser, args


def build_or_load(args, items):
    """Build or load the model to train; return it, its tokenizer, side, mean and std."""
    init = str(Checkpoint(args.out).directory) if args.resume else args.init
    if init:
        encoder = load_clip(resolve_model(init), device=args.device, precision='fp32')
        return (encoder.model, encoder.tokenizer, encoder.settings.crop, encoder.settings.mean,
                encoder.settings.std)
    size = SIZES[args.size]
    captions = sorted({item.caption for item in items})
    tokenizer = build_tokenizer(default_corpus(extra=captions + list(BACKGROUND_CAPTIONS)),
                                vocab_size=800, max_length=size.max_text_tokens)
    return build_model(tokenizer, size, seed=args.seed), tokenizer, size.image_size, \
        CLIP_MEAN, CLIP_STD


def main(argv=None) -> None:
    parser, args = parse_arguments(argv)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = torch.device(args.device)
    items = [item for folder in args.data for item in read_captions(folder)]
    model, tokenizer, image_size, mean, std = build_or_load(args, items)
    patch = model.config.vision_config.patch_size
    if args.low_res and not patch <= args.low_res < image_size:
        parser.error(f'--low-res must be at least the patch size ({patch}) and below the '
                     f'input size ({image_size})')
    model.to(device).train()
    normalize = Normalizer(mean, std, device)
    image_settings = ImageSettings(resize=image_size, crop=image_size, mean=mean, std=std)

    images = load_images(items, image_size)
    captions = sorted({item.caption for item in items})
    caption_index = {c: i for i, c in enumerate(captions)}
    tokens = tokenizer(captions, padding=True, truncation=True, return_tensors='pt')
    caption_ids = torch.tensor([caption_index[item.caption] for item in items])
    group_names = sorted({item.label or item.caption for item in items})
    group_of = {name: i for i, name in enumerate(group_names)}
    groups = torch.tensor([group_of[item.label or item.caption] for item in items])

    probe = None
    if args.eval_data:
        eval_items = read_captions(args.eval_data)
        probe = ProbeSet(eval_items, load_images(eval_items, image_size),
                         DEFAULT_PROMPT_TEMPLATES, BACKGROUND_CAPTIONS)

    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if name == 'logit_scale':
            continue
        (no_decay if parameter.ndim < 2 else decay).append(parameter)
    optimizer = torch.optim.AdamW([
        {'params': decay, 'weight_decay': args.weight_decay},
        {'params': no_decay, 'weight_decay': 0.0},
        {'params': [model.logit_scale], 'weight_decay': 0.0,
         'lr': args.logit_scale_lr or 10 * args.lr}], lr=args.lr)
    base_lrs = [group['lr'] for group in optimizer.param_groups]

    checkpoint = Checkpoint(args.out)
    arguments = jsonable(vars(args))
    step, spent, history = 0, 0.0, []
    if args.resume:
        step, spent, history = checkpoint.restore(optimizer, rng)
        base_lrs = [group['initial_lr'] for group in optimizer.param_groups]
    for group, base in zip(optimizer.param_groups, base_lrs):
        group['initial_lr'] = base
    last = args.steps if args.minutes is None else None
    started = time.monotonic() - spent * 60

    def minutes() -> float:
        return (time.monotonic() - started) / 60

    def save() -> None:
        checkpoint.save(lambda directory: save_model_directory(directory, model, tokenizer,
                                                               image_size),
                        optimizer, rng, step, minutes(), history, arguments)

    progress = tqdm(total=last, initial=step, desc='training', unit='step')
    while True:
        done = step / last if last else minutes() / args.minutes
        if done >= 1 or (args.until_step is not None and step >= args.until_step):
            break
        step += 1
        warm = min(1.0, step / max(1, args.warmup))
        cosine = 0.5 * (1 + math.cos(math.pi * (step / last if last else done)))
        for group, base in zip(optimizer.param_groups, base_lrs):
            group['lr'] = base * warm * cosine
        batch = torch.from_numpy(rng.choice(len(items), args.batch_size, replace=False))
        pixels = images[batch].to(device).float()
        flip = torch.rand(len(batch), device=device) < 0.5
        pixels = torch.where(flip[:, None, None, None], pixels.flip(-1), pixels)
        if args.low_res and step <= args.low_res_steps:
            pixels = F.interpolate(pixels, size=(args.low_res, args.low_res), mode='bilinear',
                                   antialias=True, align_corners=False)
        loss = symmetric_info_nce(
            encode_image(model, normalize(pixels)),
            encode_captions(model, tokens, caption_ids[batch], device),
            model.logit_scale, groups[batch].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(max=MAX_LOGIT_SCALE)
        record = {'step': step, 'loss': round(loss.item(), 4),
                  'logit_scale': round(model.logit_scale.exp().item(), 2)}
        ending = step == last or (last is None and minutes() >= args.minutes)
        if probe and (step % args.eval_every == 0 or ending):
            record['minutes'] = round(minutes(), 2)
            record['probe_accuracy'] = round(probe.accuracy(model, tokenizer, image_settings), 4)
        history.append(record)
        progress.update()
        progress.set_postfix({k: v for k, v in record.items() if k != 'step'})
        if args.checkpoint_every and step % args.checkpoint_every == 0 and not ending:
            save()
    progress.close()

    if args.until_step is not None and step >= args.until_step and (
            last is None or step < last):
        save()
        print(json.dumps({'stopped_at_step': step, 'checkpoint': str(checkpoint.directory)}))
        return
    model.eval()
    save_model_directory(args.out, model, tokenizer, image_size)
    summary = {'command_args': {k: ' '.join(map(str, v)) if isinstance(v, list) else str(v)
                                for k, v in vars(args).items()},
               'pairs': len(items), 'steps': step, 'minutes': round(minutes(), 1),
               'final': history[-1], 'loss': [h['loss'] for h in history],
               'probe': [h for h in history if 'probe_accuracy' in h]}
    (args.out / 'training.json').write_text(json.dumps(summary, indent=1))
    checkpoint.remove()
    print(json.dumps(summary['final']))


if __name__ == '__main__':
    main()
