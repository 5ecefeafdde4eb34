"""KaoKore data layer: metadata, IIIF downloads, verification, datasets and splits."""

from kaogen.data.iiif import IIIFImageURL, image_url
from kaogen.data.metadata import GENDERS, STATUSES, Metadata, Record, load_metadata

__all__ = [
    "GENDERS", "STATUSES", "IIIFImageURL", "Metadata", "Record", "image_url", "load_metadata",
    "KaoKoreDataset", "ImageFolderDataset", "DownloadOptions", "download", "verify", "info",
]


def __getattr__(name):  # torch-dependent pieces load on first use
    if name in ("KaoKoreDataset", "ImageFolderDataset"):
        from kaogen.data import datasets

        return getattr(datasets, name)
    if name in ("DownloadOptions", "download"):
        from kaogen.data import download

        return getattr(download, name) if name != "download" else download.download
    if name in ("verify", "info"):
        from kaogen.data import inspect

        return getattr(inspect, name)
    raise AttributeError(name)
