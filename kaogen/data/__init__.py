"""KaoKore data layer: metadata, IIIF downloads, verification, datasets and splits."""

import importlib

from kaogen.data.iiif import IIIFImageURL, image_url
from kaogen.data.metadata import GENDERS, STATUSES, Metadata, Record, load_metadata

__all__ = [
    "GENDERS", "STATUSES", "IIIFImageURL", "Metadata", "Record", "image_url", "load_metadata",
    "KaoKoreDataset", "ImageFolderDataset", "DownloadOptions", "download", "verify", "info",
]

_LAZY = {"KaoKoreDataset": "datasets", "ImageFolderDataset": "datasets", "DownloadOptions": "download",
         "verify": "inspect", "info": "inspect"}


def __getattr__(name):  # torch-dependent pieces load on first use
    if name in _LAZY:
        return getattr(importlib.import_module(f"kaogen.data.{_LAZY[name]}"), name)
    if name == "download":
        # Importing the submodule binds `kaogen.data.download` to it; the function is download.download.
        return importlib.import_module("kaogen.data.download")
    raise AttributeError(name)
