"""Datasets for supernet training: the embedded default (scikit-learn digits), image folders in the usual
layouts (and path,label tables), CIFAR batches; text as language-modelling windows (``lm``).

Nothing is downloaded ever. Every image dataset becomes a :class:`DataBundle` of uint8 splits that stream
from their files (or a memory-mapped uint8 cache) and are augmented and normalised per batch.
"""
from .batches import AUGMENTS, ImageBatches, SeededBatchSampler, describe_mixing
from .bundle import DataBundle, DatasetPair, TrainingData, loaders
from .lm import TokenBundle, load_text_lm, token_bundle
from .readers import load_cifar, load_digits_bundle, load_image_folder
from .registry import check_dataset, load_dataset

__all__ = ["AUGMENTS", "DataBundle", "DatasetPair", "ImageBatches", "SeededBatchSampler", "TokenBundle",
           "TrainingData", "check_dataset", "describe_mixing", "load_cifar", "load_dataset", "load_digits_bundle", "load_image_folder", "load_text_lm", "loaders",
           "token_bundle"]
