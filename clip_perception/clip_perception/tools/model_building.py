"""
Build CLIP model directories from scratch.

A small BPE tokenizer and a random-init CLIPModel of a chosen size, saved the
way released checkpoints are (config.json, model.safetensors, tokenizer and
processor files), so they load through the same `load_clip` path as
`openai/clip-vit-base-patch32`.

Used by the tests, the benchmark (ViT-B/32 architecture, random weights) and
the trainer (a small model trained from scratch).
"""
import collections
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from clip_perception.engine.encoder import CLIP_MEAN, CLIP_STD
from clip_perception.engine.prompts import (DEFAULT_BACKGROUND_PROMPTS, DEFAULT_LABELS,
                                            DEFAULT_PROMPT_TEMPLATES)
from clip_perception.engine.sliding_windows.box_regression import REGRESSOR_FILE

BOS, EOS, UNK, PAD = '<|startoftext|>', '<|endoftext|>', '<|unk|>', '<|pad|>'
SPECIAL_TOKENS = (BOS, EOS, UNK, PAD)  # ids 0-3


@dataclass(frozen=True)
class ClipSize:
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    text_width: int
    text_layers: int
    text_heads: int
    projection_dim: int
    max_text_tokens: int = 77
    # CLIP's own activation; 'gelu' is one fused op on a CPU (about 10% faster to train).
    activation: str = 'quick_gelu'


# A CLIP small enough for unit tests (about 0.2 M parameters).
TEST_SIZE = ClipSize(32, 16, 32, 1, 2, 32, 1, 2, 16, max_text_tokens=32)
# The bundled demo model (models/workbench_demo): 48 px input, 8 px patches,
# about 1.3 M parameters.
DEMO_SIZE = ClipSize(image_size=48, patch_size=8, vision_width=128, vision_layers=4,
                     vision_heads=4, text_width=128, text_layers=2, text_heads=4,
                     projection_dim=128, max_text_tokens=32, activation='gelu')
# The demo model at 64 px input (64 patches instead of 36): thin tools keep more pixels.
DEMO64_SIZE = replace(DEMO_SIZE, image_size=64)
# A wider, deeper ViT at the demo's input (6 layers × 192, about 2.7 M vision parameters).
DEMO_WIDE_SIZE = replace(DEMO_SIZE, vision_width=192, vision_layers=6, vision_heads=6)
# The image and text towers of openai/clip-vit-base-patch32.
VIT_B_32 = ClipSize(224, 32, 768, 12, 12, 512, 12, 8, 512)


@dataclass(frozen=True)
class ConvSize:
    """
    A dual encoder with a ConvNeXt image tower and CLIP's text tower.

    transformers' VisionTextDualEncoderModel (no remote code): the image tower's
    pooled output (the last stage averaged, then layer-normed) is projected into the
    joint space like CLIP's class token.
    """

    image_size: int
    stem: int  # the patchify stem's stride: the first stage sees image_size / stem
    stage_widths: tuple[int, ...]
    stage_depths: tuple[int, ...]
    text_width: int
    text_layers: int
    text_heads: int
    projection_dim: int
    max_text_tokens: int = 32
    activation: str = 'gelu'


# The convolutional demo tower: 48 px, a 4 px stem, three stages (12, 6, 3 px grids),
# about 1.6 M vision parameters; the demo's text tower.
DEMO_CONV_SIZE = ConvSize(image_size=48, stem=4, stage_widths=(64, 128, 256),
                          stage_depths=(2, 2, 2), text_width=128, text_layers=2, text_heads=4,
                          projection_dim=128)
# The convolutional tower small enough for unit tests.
TEST_CONV_SIZE = ConvSize(image_size=32, stem=4, stage_widths=(8, 16), stage_depths=(1, 1),
                          text_width=32, text_layers=1, text_heads=2, projection_dim=16)


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 1000, max_length: int = 77,
                    owl_layout: bool = False, vocabulary=None):
    """
    Build a lowercase BPE tokenizer in CLIP's style, as CLIPTokenizerFast.

    End-of-word '</w>', start and end tokens. The special tokens take the first ids
    (SPECIAL_TOKENS' order), or with `owl_layout` the ids OWL-ViT relies on: padding
    is id 0 (its query mask) and the end token the highest id (its text pooling takes
    the highest id of a query, as the released CLIP vocabulary has it). The same
    corpus always gives the same ids. `vocabulary`: (tokens, merges) of a tokenizer
    to lay out anew instead of learning them from `corpus`.
    """
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, Tokenizer
    from transformers import CLIPTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=UNK, end_of_word_suffix='</w>'))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.BPEDecoder(suffix='</w>')
    if vocabulary is None:
        words = collections.Counter(
            word for text in corpus
            for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(
                tokenizer.normalizer.normalize_str(text)))
        vocab, merges = _learn_bpe(words, vocab_size - len(SPECIAL_TOKENS))
    else:
        vocab, merges = vocabulary
    ordered = ((PAD, UNK) + tuple(vocab) + (BOS, EOS) if owl_layout
               else SPECIAL_TOKENS + tuple(vocab))
    tokenizer.model = models.BPE(
        vocab={token: i for i, token in enumerate(ordered)},
        merges=merges, unk_token=UNK, end_of_word_suffix='</w>')
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f'{BOS} $A {EOS}', pair=f'{BOS} $A {EOS} $B {EOS}',
        special_tokens=[(BOS, tokenizer.token_to_id(BOS)), (EOS, tokenizer.token_to_id(EOS))])
    return CLIPTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS,
                             unk_token=UNK, pad_token=PAD, model_max_length=max_length)


def _learn_bpe(words: collections.Counter, size: int):
    """
    Learn BPE merges from word counts, deterministically.

    BPE on word counts: (tokens, merges), at most `size` tokens — the sorted
    characters (a word's last one with '</w>'), then one per merge of the most
    frequent adjacent pair, ties broken by the pair's text. (The tokenizers
    library's trainer breaks ties and numbers its alphabet in hash-map order,
    which differs from run to run; token ids decide which embedding rows a model
    starts from, so a seed would not give the same model.)
    """
    spelled = {word: tuple(word[:-1]) + (word[-1] + '</w>',) for word in words}
    vocab = sorted({symbol for symbols in spelled.values() for symbol in symbols})
    merges = []
    while len(vocab) < size:
        pairs = collections.Counter()
        for word, symbols in spelled.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += words[word]
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        if best[0] + best[1] not in vocab:  # ('ab', 'c') and ('a', 'bc') make one token
            vocab.append(best[0] + best[1])
        spelled = {word: _merge(symbols, best) for word, symbols in spelled.items()}
    return vocab, merges


def _merge(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(symbols):
        if symbols[i:i + 2] == pair:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def _text_config(tokenizer, size) -> dict:
    return {
        'vocab_size': len(tokenizer), 'hidden_size': size.text_width,
        'intermediate_size': 4 * size.text_width, 'num_hidden_layers': size.text_layers,
        'num_attention_heads': size.text_heads,
        'max_position_embeddings': size.max_text_tokens,
        'bos_token_id': tokenizer.bos_token_id, 'eos_token_id': tokenizer.eos_token_id,
        'pad_token_id': tokenizer.pad_token_id, 'hidden_act': size.activation}


def build_model(tokenizer, size: 'ClipSize | ConvSize', seed: int = 0):
    """Build a random-init image-text model of `size` (a CLIP or a convolutional dual encoder)."""
    if isinstance(size, ConvSize):
        return build_conv_dual_encoder(tokenizer, size, seed)
    return build_clip(tokenizer, size, seed)


def build_conv_dual_encoder(tokenizer, size: ConvSize, seed: int = 0):
    """Build a random-init VisionTextDualEncoderModel: ConvNeXt image tower, CLIP text tower."""
    import math

    import torch
    from transformers import (CLIPTextConfig, ConvNextConfig, VisionTextDualEncoderConfig,
                              VisionTextDualEncoderModel)

    # hidden_size: what the dual encoder's projection reads (ConvNeXt names its widths
    # hidden_sizes); the pooled output has the last stage's width.
    vision = ConvNextConfig(num_channels=3, patch_size=size.stem, image_size=size.image_size,
                            hidden_sizes=list(size.stage_widths),
                            depths=list(size.stage_depths), num_stages=len(size.stage_widths),
                            hidden_size=size.stage_widths[-1])
    config = VisionTextDualEncoderConfig.from_vision_text_configs(
        vision, CLIPTextConfig(**_text_config(tokenizer, size)),
        projection_dim=size.projection_dim, logit_scale_init_value=math.log(1 / 0.07))
    torch.manual_seed(seed)
    return VisionTextDualEncoderModel(config)


def build_clip(tokenizer, size: ClipSize, seed: int = 0):
    """Build a random-init CLIPModel whose text config matches `tokenizer`'s ids."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    text_config = _text_config(tokenizer, size)
    vision_config = {
        'image_size': size.image_size, 'patch_size': size.patch_size,
        'hidden_size': size.vision_width, 'intermediate_size': 4 * size.vision_width,
        'num_hidden_layers': size.vision_layers, 'num_attention_heads': size.vision_heads,
        'hidden_act': size.activation}
    config = CLIPConfig(text_config=text_config, vision_config=vision_config,
                        projection_dim=size.projection_dim)
    torch.manual_seed(seed)
    return CLIPModel(config)


def save_model_directory(directory: Path, model, tokenizer, image_size: int) -> Path:
    """
    Write model + tokenizer + image processor settings as a loadable directory.

    A box regressor already there is removed: it was fitted to other weights.
    """
    from transformers import CLIPImageProcessor, CLIPProcessor

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / REGRESSOR_FILE).unlink(missing_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={'shortest_edge': image_size}, crop_size={'height': image_size,
                                                           'width': image_size},
            image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)),
        tokenizer=tokenizer)
    processor.save_pretrained(directory)
    return directory


def default_corpus(labels: Iterable[str] = (), extra: Iterable[str] = ()) -> list[str]:
    """Sentences for a tokenizer that must cover the default prompts and `labels`."""
    words = list(labels) + list(DEFAULT_LABELS)
    sentences = [t.replace('{}', w) for t in DEFAULT_PROMPT_TEMPLATES for w in words]
    return sentences + list(DEFAULT_BACKGROUND_PROMPTS) + list(extra)


def build_random_model_directory(directory: Path, size: 'ClipSize | ConvSize' = TEST_SIZE,
                                 seed: int = 0, labels: Iterable[str] = ()) -> Path:
    """Build a complete random-weight model directory of the given size."""
    tokenizer = build_tokenizer(default_corpus(labels), vocab_size=600,
                                max_length=size.max_text_tokens)
    model = build_model(tokenizer, size, seed=seed)
    return save_model_directory(directory, model, tokenizer, size.image_size)


def build_random_owl_directory(directory: Path, kind: str = 'owlvit', size: ClipSize = TEST_SIZE,
                               seed: int = 0) -> Path:
    """
    Build a random-weight OWL-ViT (`owlvit`) or OWLv2 (`owlv2`) detection model directory.

    The real architecture at `size`, with a tokenizer built here and the image
    processor of the released checkpoints at the model's input size.
    """
    import torch
    from transformers import (Owlv2Config, Owlv2ForObjectDetection, OwlViTConfig,
                              OwlViTForObjectDetection)

    tokenizer = build_tokenizer(default_corpus(), vocab_size=600,
                                max_length=size.max_text_tokens, owl_layout=True)
    text_config = {
        'vocab_size': len(tokenizer), 'hidden_size': size.text_width,
        'intermediate_size': 4 * size.text_width, 'num_hidden_layers': size.text_layers,
        'num_attention_heads': size.text_heads, 'max_position_embeddings': size.max_text_tokens,
        'bos_token_id': tokenizer.bos_token_id, 'eos_token_id': tokenizer.eos_token_id,
        'pad_token_id': tokenizer.pad_token_id}
    vision_config = {
        'image_size': size.image_size, 'patch_size': size.patch_size,
        'hidden_size': size.vision_width, 'intermediate_size': 4 * size.vision_width,
        'num_hidden_layers': size.vision_layers, 'num_attention_heads': size.vision_heads}
    config_class, model_class = {'owlvit': (OwlViTConfig, OwlViTForObjectDetection),
                                 'owlv2': (Owlv2Config, Owlv2ForObjectDetection)}[kind]
    # the class head compares its image embeddings (text width) with the projected
    # queries: the projection keeps the text width, as in the released checkpoints (512)
    config = config_class(text_config=text_config, vision_config=vision_config,
                          projection_dim=size.text_width)
    torch.manual_seed(seed)
    model = model_class(config).eval()
    return save_owl_directory(directory, model, tokenizer, size.image_size, kind)


def save_owl_directory(directory: Path, model, tokenizer, image_size: int,
                       kind: str = 'owlvit') -> Path:
    """Write an OWL detector, its tokenizer and its kind's image processor (safetensors)."""
    from transformers import Owlv2ImageProcessorPil, OwlViTImageProcessorPil

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    side = {'height': image_size, 'width': image_size}
    processor = OwlViTImageProcessorPil if kind == 'owlvit' else Owlv2ImageProcessorPil
    processor(size=side, crop_size=side, image_mean=list(CLIP_MEAN),
              image_std=list(CLIP_STD)).save_pretrained(directory)
    return directory
