"""Faces on whole pages: a patching detector (Mermet et al., SUMAC 2020) on torchvision's models.

    models.py       torchvision detection builders (num_classes = 2: background + face), offline weights
    synthetic.py    paper-coloured pages with real faces at known boxes (tests, smoke config, benchmark)
    data.py         the COCO page set of `kaogen data pages` as training / evaluation pages
    patches.py      training patches: boxes cut by a patch edge kept when most of the face is inside
    slicing.py      sliced inference over overlapping windows plus the whole page, boxes merged
    bundle.py       a trained detector as one object (checkpoint kind "detector")
    train.py        `kaogen train-detector`
    evaluate.py     `kaogen evaluate-detector` (pycocotools)
    annotations.py  COCO results, IIIF Presentation 3 AnnotationPage
    run.py          `kaogen detect`: pages, files, IIIF URLs -> boxes, annotations, preview, crops, review CSV

Boxes are float (N, 4) x0, y0, x1, y1 in pixels of the image they belong to, unless named `xywh`.
Nothing here runs at import; nothing is downloaded.
"""
