"""
Localization by sliding windows.

A grid of crops, each classified by CLIP, moved by the model's box regressor,
then grouped into objects.
"""
