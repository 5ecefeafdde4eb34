"""`kaogen classify`: labels and probabilities of pictures, and their explanations written to a folder.

Per picture NAME (its path under the folder given, '/' as '__', without the suffix), `--explain DIR` writes
    NAME.cam.png      the Grad-CAM map over the picture (jet colours)
    NAME.guided.png   Guided Grad-CAM (Guided Backpropagation x Grad-CAM), grey = 0
    NAME.cam.npy      the raw Grad-CAM map: float32 (H, W) of the picture, in [0, 1]
Existing files are refused (all checked before any is written) unless `force`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kaogen.atomic import atomic_path
from kaogen.classify.bundle import Classifier
from kaogen.errors import KaogenError
from kaogen.images import list_images, open_rgb, pil_to_tensor, save_image


def source_paths(source: str | Path) -> list[Path]:
    source = Path(source)
    if source.is_dir():
        paths = list_images(source)
        if not paths:
            raise KaogenError(f"no images in {source}")
        return paths
    if not source.is_file():
        raise KaogenError(f"{source} does not exist")
    return [source]


def output_stem(path: Path, base: Path | None) -> str:
    rel = path.relative_to(base) if base is not None else Path(path.name)
    return "__".join(rel.with_suffix("").parts)


def classify_paths(clf: Classifier, paths: list[Path], explain_dir: str | Path | None = None, force: bool = False,
                   batch: int = 16, cam_layer: str | None = None) -> list[dict]:
    """One dict per picture: image, label, probabilities {class: p}, and the explanation files when asked."""
    from kaogen.classify.explain import cam_overlay, explain, guided_picture, to_picture

    base = paths[0].parent if len(paths) == 1 else _common_parent(paths)
    stems = [output_stem(p, base) for p in paths]
    out_dir = Path(explain_dir) if explain_dir else None
    if out_dir is not None:
        if len(set(stems)) != len(stems):
            raise KaogenError("two pictures would share explanation file names; explain them separately")
        clashes = [out_dir / f"{s}{suf}" for s in stems for suf in (".cam.png", ".guided.png", ".cam.npy")
                   if (out_dir / f"{s}{suf}").exists()]
        if clashes and not force:
            raise KaogenError(f"{clashes[0]} already exists: pass --force to overwrite it")
        out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for i in range(0, len(paths), batch):
        chunk = paths[i:i + batch]
        pictures = [open_rgb(p) for p in chunk]
        x = torch.stack([clf.prepare(img) for img in pictures])          # (b, 3, R, R) in [0, 1]
        if out_dir is None:
            probs = clf.predict(x)
        else:
            ex = explain(clf, x, layer=cam_layer)
            probs = ex.probabilities
        for j, (path, img) in enumerate(zip(chunk, pictures)):
            p = probs[j]
            r = {"image": str(path), "label": clf.classes[int(p.argmax())],
                 "probabilities": {c: float(v) for c, v in zip(clf.classes, p.tolist())}}
            if out_dir is not None:
                stem = stems[i + j]
                cam = to_picture(ex.cam[j], img.size).clamp(0, 1)                      # (H, W) in [0, 1]
                pic = pil_to_tensor(img)
                files = {"cam_png": out_dir / f"{stem}.cam.png", "guided_png": out_dir / f"{stem}.guided.png",
                         "cam_npy": out_dir / f"{stem}.cam.npy"}
                save_image(files["cam_png"], cam_overlay(pic, cam))
                save_image(files["guided_png"], to_picture(guided_picture(ex.guided[j]), img.size, fill=0.5))
                with atomic_path(files["cam_npy"]) as tmp:
                    np.save(tmp, cam.numpy().astype(np.float32))
                r["explain"] = {k: str(v) for k, v in files.items()}
            results.append(r)
    return results


def _common_parent(paths: list[Path]) -> Path:
    import os

    return Path(os.path.commonpath([str(p.parent) for p in paths]))
