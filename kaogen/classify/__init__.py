"""Classification of KaoKore faces, explanations and similar faces (the art historian's half of kaogen).

    from kaogen.classify import Classifier, evaluate, explain, find_similar
    clf = Classifier.load("runs/00000-classifier/classifier.pt")
    evaluate(clf, "kaokore", side="test").report()          # scores beside the paper's numbers
    explain(clf, x).cam                                      # Grad-CAM maps (B, R, R) in [0, 1]
    find_similar(clf, "kaokore", "00000042.jpg", k=12, other_works=True).neighbours

Files, lowest layer first: models (torchvision networks, heads, weights), config, data (faces in
memory, split sizes), scores, anchors (published numbers), confusion_plot, bundle (Classifier),
evaluate, train (torchrun: kaogen.distributed), explain, predict, similar.
"""

import importlib

__all__ = ["ARCHS", "build_network", "ClassifierConfig", "Classifier", "load_faces", "split_sizes", "scores",
           "evaluate", "ClassifierTrainer", "explain", "classify_paths", "find_similar", "contact_sheet",
           "comparison_table"]

_LAZY = {"ARCHS": "models", "build_network": "models", "ClassifierConfig": "config", "Classifier": "bundle",
         "load_faces": "data", "split_sizes": "data", "scores": "scores", "evaluate": "evaluate",
         "ClassifierTrainer": "train", "explain": "explain", "classify_paths": "predict",
         "find_similar": "similar", "contact_sheet": "similar", "comparison_table": "anchors"}


def __getattr__(name):  # torch, torchvision and captum load on first use
    if name in _LAZY:
        return getattr(importlib.import_module(f"kaogen.classify.{_LAZY[name]}"), name)
    raise AttributeError(name)
