"""
The detection engine: frames in, classification and boxes out; never imports rclpy.

The pipeline, one module per step::

    model_loading  load a CLIP model (hub id or directory, safetensors only)
    encoder        its image and text towers behind one small interface
    prompts        labels, prompt ensembles, background prompts, the text cache
    preprocess     frame to the device once, CLIP's preprocessing there
    sliding_windows/
        grid            where the windows lie
        crops           all windows cut and resized on the device, batched
        box_regression  windows moved onto their objects
        grouping        windows to objects: thresholds, grouping, merging
    heatmaps/
        maps            per-label maps of the whole frame (dense, gradcam) to boxes
    scoring        window embeddings against class embeddings
    boxes          detections and box geometry, NMS
    detector       the whole pipeline, several frames in one pass
    memory         recent frames' regions and embeddings, searched by text
    vector_index   nearest embeddings: brute force or faiss

The localizer (DetectorSettings.localizer) chooses how boxes are made: sliding
windows (the default), or the heatmaps of one whole-frame pass (dense patch
embeddings or Grad-CAM, both training-free); the encoder gives the patch maps.
"""
