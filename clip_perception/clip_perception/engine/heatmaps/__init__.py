"""
Localization by heatmaps: per-label maps over the whole frame, then boxes.

One encoder pass over the whole frame (no crops): `dense` compares each
patch's embedding with the labels, `gradcam` asks where the frame's score of
each label comes from. Both are training-free, so they work with any CLIP
checkpoint. The maps become boxes in `maps`.
"""
