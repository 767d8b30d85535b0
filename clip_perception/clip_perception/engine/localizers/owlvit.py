"""
owlvit: the boxes and scores of an OWL-ViT / OWLv2 detection head (engine/owl.py).

One batched pass over the frames, the labels' query embeddings cached like
CLIP's prompts; a label's image-level score is its best box score.
"""
from clip_perception.engine.localizers.base import (confident_and_uncertain, DetectionContext,
                                                    FrameResult, Localizer, ranked)
from clip_perception.engine.owl import owl_detections, owl_label_scores
from clip_perception.engine.preprocess import frame_to_device


class OwlLocalizer(Localizer):
    """An OWL detection model's own boxes: one pass at the model's input size, always bounded."""

    name = 'owlvit'
    encoder_method = 'detect_frames'
    encoder_kind = 'an OWL-ViT or OWLv2 model'
    whole_image = False
    model_family = 'owl'

    def detect(self, context: DetectionContext, frames, bgr, keep) -> list[FrameResult]:
        s, encoder, classes = context.settings, context.encoder, context.class_embeddings()
        context.raise_if_cancelled()
        outputs = encoder.detect_frames(
            [frame_to_device(frame, encoder.device, bgr=is_bgr)
             for frame, is_bgr in zip(frames, bgr, strict=True)],
            classes.matrix[:classes.num_labels])
        results = []
        for output in outputs:
            detections, uncertain = confident_and_uncertain(
                lambda threshold, output=output: owl_detections(
                    output, classes.labels, threshold, s.nms_iou, s.max_detections)[0], s)
            scores = owl_label_scores(output, classes.num_labels)
            results.append(FrameResult(ranked(classes.labels, scores), detections, 1,
                                       uncertain=uncertain))
        return results
