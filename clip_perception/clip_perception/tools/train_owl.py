r"""
Train a small OWL-ViT detector from a CLIP model on annotated scenes.

    python -m clip_perception.train_owl --init models/workbench_demo \
        --data build/owl/scenes --out models/owl_demo --steps 3000

The OWL-ViT recipe (Minderer et al., 2022) at demo scale: the CLIP's towers
become the OWL-ViT backbone (position embeddings interpolated to the larger
input, the tokenizer laid out as OWL-ViT expects), each patch token gets a
class embedding and a box; the heads and, at a tenth of the rate, the backbone
are trained with DETR's set-prediction loss: each ground-truth box is matched
to one patch (Hungarian matching, scipy's linear_sum_assignment, on the same
costs as the loss), the class loss is the sigmoid focal loss over every patch
and label, the box losses L1 and generalized IoU on the matched patches.
torchvision.ops provides both losses but does not import beside this
project's torch build, so `sigmoid_focal_loss` and `generalized_box_iou` here
follow torchvision's definitions (tested against hand-computed values).

The result is a directory `OwlViTForObjectDetection.from_pretrained` loads (and
the node with `localizer: owlvit`), with a training.json of the run. Every
--checkpoint-every steps the run is saved to OUT/checkpoint (tools/checkpoint.py);
`--resume` continues a stopped run to the weights an uninterrupted one reaches,
`--until-step N` stops after step N with a checkpoint.
"""
import argparse
import json
import math
from pathlib import Path
import time

from clip_perception.engine.encoder import CLIP_MEAN, CLIP_STD
from clip_perception.engine.model_loading import resolve_model_directory
from clip_perception.engine.preprocess import frame_to_device, Normalizer, resize_bicubic
from clip_perception.tools.checkpoint import add_run_arguments, check_resume, Checkpoint, jsonable
from clip_perception.tools.datasets import read_rgb, read_scenes
from clip_perception.tools.model_building import build_tokenizer, save_owl_directory
import numpy as np
from scipy.optimize import linear_sum_assignment
import torch
import torch.nn.functional as F
from tqdm import tqdm

# DETR's loss weights (and OWL-ViT's): class, L1, generalized IoU.
CLASS_WEIGHT, L1_WEIGHT, GIOU_WEIGHT = 2.0, 5.0, 2.0
# The query each label is given during training (the node ensembles its own templates).
TRAIN_TEMPLATE = 'a photo of a {}.'


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    sides = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)
    return sides[..., 0] * sides[..., 1]


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N, 4] and [M, 4] xyxy -> [N, M] generalized IoU (Rezatofighi et al., 2019)."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    iou = inter / union.clamp(min=1e-9)
    hull = (torch.maximum(a[:, None, 2:], b[None, :, 2:])
            - torch.minimum(a[:, None, :2], b[None, :, :2])).clamp(min=0).prod(dim=-1)
    return iou - (hull - union) / hull.clamp(min=1e-9)


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Element-wise focal loss of sigmoid logits (Lin et al., 2017), unreduced."""
    probability = logits.sigmoid()
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    p_t = probability * targets + (1 - probability) * (1 - targets)
    loss = cross_entropy * (1 - p_t) ** gamma
    return (alpha * targets + (1 - alpha) * (1 - targets)) * loss


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2],
                     dim=-1)


def match(logits: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
          truths: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """
    Match ground truths to patches (Hungarian) on the loss's own costs.

    One image: logits [P, L], boxes [P, 4] xyxy 0..1, labels [T] and truths [T, 4]
    xyxy 0..1 -> (patch indices, truth indices). Class cost: the focal loss of
    calling the patch the truth's label minus that of not calling it (as DETR).
    """
    with torch.no_grad():
        probability = logits[:, labels].sigmoid()  # [P, T]
        alpha, gamma = 0.25, 2.0
        positive = alpha * (1 - probability) ** gamma * -(probability + 1e-8).log()
        negative = (1 - alpha) * probability ** gamma * -(1 - probability + 1e-8).log()
        cost = (CLASS_WEIGHT * (positive - negative)
                + L1_WEIGHT * torch.cdist(boxes, truths, p=1)
                - GIOU_WEIGHT * generalized_box_iou(boxes, truths))
    patches, matched = linear_sum_assignment(cost.cpu().numpy())
    return patches, matched


def set_prediction_loss(logits: torch.Tensor, boxes: torch.Tensor,
                        targets: list[tuple[torch.Tensor, torch.Tensor]],
                        centre_radius: float | None = None) -> dict:
    """
    Compute DETR's loss over a batch.

    logits [B, P, L], boxes [B, P, 4] cx, cy, w, h in 0..1; per image (labels [T],
    truths [T, 4] xyxy 0..1). Class: focal loss over every patch and label, positives
    at the matched patches; boxes: L1 and 1 - GIoU on the matched patches; each
    normalized by the number of positives.

    centre_radius (one-to-many assignment, as FCOS's centre sampling): besides its
    matched patch, every patch of the square grid whose centre lies within
    centre_radius × the truth's width and height of the truth's centre is a positive
    of it (a patch in two truths' regions goes to the smaller truth); the detector's
    NMS removes the duplicates this teaches. DETR's one-to-one matching gives an
    object one positive among hundreds of patches; at demo scale the class head then
    learns where objects are far too slowly.
    """
    corners = cxcywh_to_xyxy(boxes)
    class_targets = torch.zeros_like(logits)
    l1, giou, count = logits.new_zeros(()), logits.new_zeros(()), 0
    for index, (labels, truths) in enumerate(targets):
        if not len(labels):
            continue
        patches, matched = match(logits[index], corners[index], labels, truths)
        if centre_radius is not None:
            patches, matched = _with_centre_positives(patches, matched, truths,
                                                      logits.shape[1], centre_radius)
        class_targets[index, patches, labels[matched]] = 1.0
        predicted, wanted = corners[index, patches], truths[matched]
        l1 = l1 + (boxes[index, patches] - _xyxy_to_cxcywh(wanted)).abs().sum()
        giou = giou + (1 - torch.diag(generalized_box_iou(predicted, wanted))).sum()
        count += len(patches)
    count = max(count, 1)
    focal = sigmoid_focal_loss(logits, class_targets).sum() / count
    losses = {'class': focal, 'l1': l1 / count, 'giou': giou / count}
    losses['total'] = (CLASS_WEIGHT * losses['class'] + L1_WEIGHT * losses['l1']
                       + GIOU_WEIGHT * losses['giou'])
    return losses


def _with_centre_positives(patches: np.ndarray, matched: np.ndarray, truths: torch.Tensor,
                           count: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Add every patch near a truth's centre to (patches, matched truths)."""
    side = int(round(math.sqrt(count)))
    cells = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    ys, xs = torch.meshgrid(cells, cells, indexing='ij')
    centres = torch.stack([xs.flatten(), ys.flatten()], dim=1)  # [P, 2], row-major
    middle, size = (truths[:, :2] + truths[:, 2:]) / 2, truths[:, 2:] - truths[:, :2]
    inside = ((centres[:, None] - middle[None]).abs() <= radius * size[None]).all(dim=-1)
    area = torch.where(inside, size.prod(dim=1)[None], torch.inf)  # [P, T]
    chosen = {int(p): int(t) for p, t in zip(patches, matched)}
    for patch in inside.any(dim=1).nonzero().flatten().tolist():
        chosen.setdefault(patch, int(area[patch].argmin()))
    order = sorted(chosen)
    return np.array(order), np.array([chosen[p] for p in order])


def _xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]],
                     dim=-1)


def owl_from_clip(clip_directory: Path, image_size: int):
    """
    Build an OwlViTForObjectDetection whose backbone is a CLIP model's.

    Returns (model, tokenizer). The vision position embeddings are interpolated
    (bicubic) to `image_size`; the tokenizer is rebuilt in OWL-ViT's id layout
    (model_building.build_tokenizer) and the text token embeddings permuted to it.
    The class head starts as CLIP: its projection is the visual projection, its
    scale the CLIP temperature, its shift low (rare positives, as the focal loss
    wants); the box head starts at the patch grid's prior boxes.
    """
    from transformers import AutoTokenizer, CLIPModel, OwlViTConfig, OwlViTForObjectDetection

    clip = CLIPModel.from_pretrained(clip_directory, use_safetensors=True)
    clip_tokenizer = AutoTokenizer.from_pretrained(clip_directory)
    vocab = clip_tokenizer.get_vocab()
    words = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])
             if token not in clip_tokenizer.all_special_tokens]
    tokenizer = build_tokenizer([], max_length=clip.config.text_config.max_position_embeddings,
                                owl_layout=True, vocabulary=(words, _merges(clip_tokenizer)))
    text_config = clip.config.text_config.to_dict()
    text_config.update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision_config = clip.config.vision_config.to_dict()
    vision_config['image_size'] = image_size
    if clip.config.projection_dim != clip.config.text_config.hidden_size:
        raise ValueError('OWL-ViT compares class embeddings of the text width with the '
                         'projected queries: the CLIP projection must keep the text width')
    config = OwlViTConfig(text_config=text_config, vision_config=vision_config,
                          projection_dim=clip.config.projection_dim)
    model = OwlViTForObjectDetection(config)
    state = clip.state_dict()
    old_ids = torch.tensor([vocab[token] for token, _ in
                            sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])])
    key = 'text_model.embeddings.token_embedding.weight'
    state[key] = state[key][old_ids]
    key = 'vision_model.embeddings.position_embedding.weight'
    state[key] = _interpolate_positions(state[key], image_size // config.vision_config.patch_size)
    for name in ('weight', 'bias'):  # CLIP's spelling of this layer norm, and OWL-ViT's
        state[f'vision_model.pre_layernorm.{name}'] = state.pop(
            f'vision_model.pre_layrnorm.{name}')
    state.pop('vision_model.embeddings.position_ids', None)
    state.pop('text_model.embeddings.position_ids', None)
    missing, unexpected = model.owlvit.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith('position_ids')]:
        raise ValueError(f'CLIP and OWL-ViT weights differ: {missing} {unexpected}')
    with torch.no_grad():
        head = model.class_head
        head.dense0.weight.copy_(clip.visual_projection.weight)
        head.dense0.bias.zero_()
        head.logit_scale.weight.zero_()
        head.logit_scale.bias.fill_(float(clip.logit_scale.exp()) - 1.0)  # elu(b) + 1
        head.logit_shift.weight.zero_()
        head.logit_shift.bias.fill_(-0.7)
        # transformers initializes the box head with unit-variance weights: its outputs
        # (hundreds) saturate the sigmoid and no gradient flows. PyTorch's default
        # init for the hidden layers and a zero last layer start every patch at the
        # grid prior (its own cell, one patch in size), as DETR-style heads do.
        for layer in (model.box_head.dense0, model.box_head.dense1):
            layer.reset_parameters()
        model.box_head.dense2.weight.zero_()
        model.box_head.dense2.bias.zero_()
    return model, tokenizer


def _merges(tokenizer) -> list[tuple[str, str]]:
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    return [tuple(m.split(' ')) if isinstance(m, str) else tuple(m)
            for m in state['model']['merges']]


def _interpolate_positions(table: torch.Tensor, side: int) -> torch.Tensor:
    """[1 + n², C] position embeddings -> [1 + side², C] (bicubic over the patch grid)."""
    cls, grid = table[:1], table[1:]
    old = int(round(math.sqrt(len(grid))))
    grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(side, side), mode='bicubic', align_corners=False)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(side * side, -1)])


def load_scenes(folder: Path, image_size: int, labels: tuple[str, ...]):
    """Read scenes as [N, 3, S, S] uint8 (stretched, as OWL-ViT's processor) and targets."""
    scenes = read_scenes(folder)
    images = torch.empty((len(scenes), 3, image_size, image_size), dtype=torch.uint8)
    targets = []
    for index, scene in enumerate(tqdm(scenes, desc='loading', unit='scene', leave=False)):
        frame = frame_to_device(read_rgb(scene.path), torch.device('cpu'))
        images[index] = resize_bicubic(frame, image_size, image_size).to(torch.uint8)
        scale = torch.tensor([scene.width, scene.height] * 2, dtype=torch.float32)
        targets.append((torch.tensor([labels.index(label) for label, _ in scene.objects],
                                     dtype=torch.long),
                        torch.tensor([box for _, box in scene.objects],
                                     dtype=torch.float32).reshape(-1, 4) / scale))
    return images, targets


def flip(images: torch.Tensor, targets: list, chosen: torch.Tensor):
    """Mirror the `chosen` images of a batch left-right, with their boxes."""
    images = torch.where(chosen[:, None, None, None], images.flip(-1), images)
    flipped = []
    for (labels, boxes), mirrored in zip(targets, chosen.tolist()):
        if mirrored and len(boxes):
            boxes = torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], 1)
        flipped.append((labels, boxes))
    return images, flipped


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--init', required=True, help='CLIP model directory (or cached hub id)')
    parser.add_argument('--data', type=Path, required=True, help='annotated scenes folder')
    parser.add_argument('--out', type=Path, required=True)
    parser.add_argument('--image-size', type=int, default=160)
    add_run_arguments(parser, steps=3000, batch_size=16, lr=1e-3, warmup=100,
                      lr_help='learning rate of the heads')
    parser.add_argument('--backbone-lr', type=float, default=1e-4)
    parser.add_argument('--centre-radius', type=float, default=None,
                        help='one-to-many assignment: patches this fraction of a box from its '
                             'centre are positives too (default: one-to-one, as DETR)')
    args = parser.parse_args(argv)
    check_resume(parser, args)
    return args


def build_or_resume(args):
    """Build the detector to train and its tokenizer from the CLIP, or load the stopped run's."""
    if not args.resume:
        return owl_from_clip(resolve_model_directory(args.init), args.image_size)
    from transformers import AutoTokenizer, OwlViTForObjectDetection

    directory = Checkpoint(args.out).directory
    return (OwlViTForObjectDetection.from_pretrained(directory, use_safetensors=True),
            AutoTokenizer.from_pretrained(directory))


def main(argv=None) -> None:
    args = parse_arguments(argv)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model, tokenizer = build_or_resume(args)
    model.train()
    scenes_labels = tuple(json.loads((args.data / 'annotations.json').read_text())['categories'])
    labels = tuple(c['name'] for c in sorted(scenes_labels, key=lambda c: c['id']))
    images, targets = load_scenes(args.data, args.image_size, labels)
    normalize = Normalizer(CLIP_MEAN, CLIP_STD, torch.device('cpu'))
    queries = tokenizer([TRAIN_TEMPLATE.format(label) for label in labels], padding=True,
                        return_tensors='pt')
    heads = [p for n, p in model.named_parameters() if not n.startswith('owlvit.')]
    backbone = [p for n, p in model.named_parameters() if n.startswith('owlvit.')]
    optimizer = torch.optim.AdamW([{'params': heads, 'lr': args.lr},
                                   {'params': backbone, 'lr': args.backbone_lr}],
                                  weight_decay=1e-4)
    base_lrs = [args.lr, args.backbone_lr]
    checkpoint = Checkpoint(args.out)
    arguments = jsonable(vars(args))
    step, spent, history = 0, 0.0, []
    if args.resume:
        step, spent, history = checkpoint.restore(optimizer, rng)
    started = time.monotonic() - spent * 60

    def minutes() -> float:
        return (time.monotonic() - started) / 60

    def save() -> None:
        checkpoint.save(lambda directory: save_owl_directory(directory, model, tokenizer,
                                                             args.image_size),
                        optimizer, rng, step, minutes(), history, arguments)

    last = args.steps if args.until_step is None else min(args.steps, args.until_step)
    progress = tqdm(total=args.steps, initial=step, desc='training', unit='step')
    while step < last:
        step += 1
        factor = min(1.0, step / args.warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group, base in zip(optimizer.param_groups, base_lrs):
            group['lr'] = base * factor
        batch = rng.choice(len(images), args.batch_size, replace=False)
        pixels, batch_targets = flip(images[batch], [targets[i] for i in batch],
                                     torch.from_numpy(rng.random(len(batch)) < 0.5))
        feature_map, _ = model.image_embedder(pixel_values=normalize(pixels.float()))
        features = feature_map.flatten(1, 2)
        query_embeds = model.owlvit.get_text_features(**queries).pooler_output
        logits, _ = model.class_predictor(
            features, query_embeds[None].expand(len(batch), -1, -1), None)
        boxes = model.box_predictor(features, feature_map)
        losses = set_prediction_loss(logits, boxes, batch_targets, args.centre_radius)
        optimizer.zero_grad(set_to_none=True)
        losses['total'].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        record = {'step': step, **{k: round(v.item(), 4) for k, v in losses.items()}}
        history.append(record)
        progress.update()
        progress.set_postfix({k: v for k, v in record.items() if k != 'step'})
        if args.checkpoint_every and step % args.checkpoint_every == 0 and step < last:
            save()
    progress.close()

    if step < args.steps:
        save()
        print(json.dumps({'stopped_at_step': step, 'checkpoint': str(checkpoint.directory)}))
        return
    model.eval()
    save_owl_directory(args.out, model, tokenizer, args.image_size)
    summary = {'command_args': {k: str(v) for k, v in vars(args).items()},
               'scenes': len(images), 'labels': labels, 'steps': step,
               'minutes': round(minutes(), 1),
               'final': history[-1], 'loss': [h['total'] for h in history]}
    (args.out / 'training.json').write_text(json.dumps(summary, indent=1))
    checkpoint.remove()
    print(json.dumps(summary['final']))


if __name__ == '__main__':
    main()
