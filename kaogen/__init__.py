"""kaogen: a generative-art toolkit for pre-modern Japanese painting, built on KaoKore.

Parts (one sub-package each):
    kaogen.data    KaoKore metadata, IIIF downloader, datasets
    kaogen.render  strokes, paintings, exact and soft rasterisers, compositing, export

Importing `kaogen` is cheap: torch is imported by the sub-packages that need it.
"""

__version__ = "0.1.0"

from kaogen.errors import KaogenError

__all__ = ["KaogenError", "__version__"]
