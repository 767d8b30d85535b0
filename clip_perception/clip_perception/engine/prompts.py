"""
Prompts and the label-embedding cache.

A label's embedding is the mean of its L2-normalized template embeddings,
renormalized (prompt ensembling, as in CLIP's zero-shot evaluation). Background
prompts are whole sentences, one class each, that compete with the labels so
an empty window is not forced onto a label.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

# The workbench tools: the node's default labels and what the demo model was trained on.
DEFAULT_LABELS = ('hammer', 'screwdriver', 'wrench', 'tape measure', 'pliers')
DEFAULT_PROMPT_TEMPLATES = (
    'a photo of a {}.',
    'a photo of the {}.',
    'a close-up photo of a {}.',
    'a photo of a {} on a workbench.',
    'a cropped photo of a {}.',
)
DEFAULT_BACKGROUND_PROMPTS = (
    'a photo of an empty workbench.',
    'a blurry photo of a table surface.',
    'a photo of a wooden table top.',
)


class PromptError(ValueError):
    """Invalid labels, templates or background prompts; the message says why."""


def validate_prompts(labels: Sequence[str], templates: Sequence[str],
                     background_prompts: Sequence[str]) -> None:
    if not labels:
        raise PromptError('labels must not be empty')
    blank = [repr(label) for label in labels if not label.strip()]
    if blank:
        raise PromptError(f'labels must not be blank: {", ".join(blank)}')
    seen, duplicates = set(), []
    for label in labels:
        key = label.strip().lower()
        if key in seen:
            duplicates.append(label)
        seen.add(key)
    if duplicates:
        raise PromptError(f'duplicate labels: {", ".join(duplicates)}')
    if not templates:
        raise PromptError('prompt_templates must not be empty')
    without_slot = [t for t in templates if t.count('{}') != 1]
    if without_slot:
        raise PromptError('each prompt template needs exactly one {} for the label: '
                          + ', '.join(repr(t) for t in without_slot))
    blank_background = [repr(p) for p in background_prompts if not p.strip()]
    if blank_background:
        raise PromptError('background prompts must not be blank')
    clashes = sorted(seen & {p.strip().lower() for p in background_prompts})
    if clashes:
        raise PromptError(f'background prompts repeat labels: {", ".join(clashes)}')


@dataclass(frozen=True)
class ClassEmbeddings:
    """Text side of the scoring: labels first, then background prompts."""

    labels: tuple[str, ...]
    background_prompts: tuple[str, ...]
    matrix: torch.Tensor  # [len(labels) + len(background_prompts), D], L2-normalized

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def column_labels(self) -> list[str]:
        """Name what each matrix row stands for: its label, or '' for a background prompt."""
        return list(self.labels) + [''] * len(self.background_prompts)


def ensemble(template_embeddings: torch.Tensor) -> torch.Tensor:
    """[K, T, D] normalized embeddings -> [K, D]: mean over templates, renormalized."""
    return torch.nn.functional.normalize(template_embeddings.mean(dim=1), dim=-1)


class LabelEmbeddingCache:
    """
    Encodes prompts once per (labels, templates, background prompts).

    Keeps the `capacity` most recently used prompt sets (an LRU): the streaming
    labels, used every frame, stay while on-demand queries come and go.
    """

    def __init__(self, encode_texts: Callable[[list[str]], torch.Tensor], capacity: int = 8):
        self._encode_texts = encode_texts
        self._capacity = capacity
        self._entries: OrderedDict[tuple, ClassEmbeddings] = OrderedDict()

    def get(self, labels: Sequence[str], templates: Sequence[str],
            background_prompts: Sequence[str]) -> ClassEmbeddings:
        key = (tuple(labels), tuple(templates), tuple(background_prompts))
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        validate_prompts(*key)
        value = self._entries[key] = self._build(*key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        return value

    def _build(self, labels, templates, background_prompts) -> ClassEmbeddings:
        prompts = [template.replace('{}', label) for label in labels for template in templates]
        embeddings = self._encode_texts(prompts + list(background_prompts))
        label_part = embeddings[:len(prompts)].reshape(len(labels), len(templates), -1)
        matrix = torch.cat([ensemble(label_part), embeddings[len(prompts):]], dim=0)
        return ClassEmbeddings(labels, background_prompts, matrix)
