"""Window embeddings against class embeddings: CLIP logits and probabilities."""
import torch


def class_logits(image_embeddings: torch.Tensor, class_matrix: torch.Tensor,
                 logit_scale: float) -> torch.Tensor:
    """[N, D] and [K, D] normalized -> [N, K] logit_scale · cosine similarity."""
    return logit_scale * image_embeddings @ class_matrix.T


def label_scores(logits: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Image-level scores: softmax over the labels only (background prompts left out)."""
    return logits[..., :num_labels].softmax(dim=-1)
