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
from .seeds_extra import NAME_FORMS, make_seed_source, parse_seed_name
from .stream import BatchStream
from .transforms import TRANSFORM_SPECS
from ..configcheck import check_choice, name_check
from ..errors import DualatError


@name_check
def check_config_names(cfg) -> None:
    """The data section's names, against this package's registries: data.name, data.seeds
    (mix:F with its fraction) and the two augmentations."""
    d = cfg.data
    check_choice(d.name, "data.name", sorted(DATASETS))
    try:
        base = parse_seed_name(d.seeds)[0]   # 'mix:0.3' -> 'mix'; a bad fraction names the key
    except DualatError as exc:
        raise DualatError(f"config key data.seeds: {exc}") from None
    check_choice(base, "data.seeds", list(SEED_SOURCES) + NAME_FORMS)
    for k in ("augment", "strong_augment"):
        check_choice(getattr(d, k), f"data.{k}", list(TRANSFORM_SPECS))


__all__ = ["ImageSet", "FolderImageSet", "load_dataset", "DATASETS", "BatchStream", "make_seed_source",
           "SEED_SOURCES", "SeedSource", "augment", "dataset_info"]
