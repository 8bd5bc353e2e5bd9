"""Datasets for supernet training: the embedded default (scikit-learn digits), image folders, CIFAR batches.

Nothing is downloaded ever. Every dataset becomes a :class:`DataBundle` of in-memory tensor datasets.
"""
from .bundle import DataBundle, loaders
from .readers import load_cifar, load_digits_bundle, load_image_folder
from .registry import load_dataset

__all__ = ["DataBundle", "load_cifar", "load_dataset", "load_digits_bundle", "load_image_folder", "loaders"]
