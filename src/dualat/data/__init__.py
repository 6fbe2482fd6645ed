"""Datasets, batch streams, augmentations and PGD seed sources; everything offline.

    load_dataset(name, split, root=..., image_size=..., channels=..., **kwargs) -> ImageSet | FolderImageSet
    dataset_info(name, ...) -> dict(shape, num_classes, default_root)
    BatchStream(dataset, batch_size, seed, transform, rank, world_size)  # endless, resumable
    augment.make_transform(spec, shape)                                 # (x, generator) -> x
    make_seed_source(kind, shape, split, train_set, folder, seed).sample(n, y, generator)
"""

from . import transforms as augment
from .datasets import DATASETS, data_info, dataset_info, load_dataset, load_split
from .folder import FolderImageSet
from .imageset import ImageSet
from .seeds import SEED_SOURCES, SeedSource
from .seeds_extra import make_seed_source
from .stream import BatchStream

__all__ = ["ImageSet", "FolderImageSet", "load_dataset", "DATASETS", "BatchStream", "make_seed_source",
           "SEED_SOURCES", "SeedSource", "augment", "dataset_info"]
