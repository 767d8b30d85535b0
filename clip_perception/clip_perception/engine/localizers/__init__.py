"""
The localizers, one class each behind base.Localizer, registered by name.

    windows  sliding windows, each classified (windows.py)
    dense    patch embeddings against the labels (dense.py)
    gradcam  Grad-CAM of the whole frame's label scores (gradcam.py)
    owlvit   an OWL-ViT / OWLv2 detection head's boxes (owlvit.py)

A fifth localizer is a class with a `name` added to REGISTRY; the detector and
the node ask it what it needs, never its name.
"""
from clip_perception.engine.localizers.base import FrameResult, Localizer
from clip_perception.engine.localizers.dense import DenseLocalizer
from clip_perception.engine.localizers.gradcam import GradCamLocalizer
from clip_perception.engine.localizers.owlvit import OwlLocalizer
from clip_perception.engine.localizers.windows import ScoredWindows, WindowsLocalizer

REGISTRY: dict[str, Localizer] = {
    kind.name: kind() for kind in (WindowsLocalizer, DenseLocalizer, GradCamLocalizer,
                                   OwlLocalizer)}
LOCALIZERS = tuple(REGISTRY)
# Localizers whose pass embeds regions of the frame in the joint space: what a memory
# of frames can search by text (FrameResult.regions).
REGION_LOCALIZERS = tuple(name for name, found in REGISTRY.items() if found.keeps_regions)


def localizer(name: str) -> Localizer:
    """Return the localizer registered as `name`; ValueError naming the choices otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f'localizer must be one of {", ".join(LOCALIZERS)}, '
                         f'not {name!r}') from None


__all__ = ['FrameResult', 'Localizer', 'LOCALIZERS', 'localizer', 'REGION_LOCALIZERS',
           'REGISTRY', 'ScoredWindows']
