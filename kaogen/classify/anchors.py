"""Published KaoKore classification numbers (test accuracy, %), and a table that puts a run beside them.

Sources (facts in ../shared/ART-HISTORY.md):
  * the KaoKore paper, Table 2: seven torchvision models on the official split;
  * ST-SACLF (arXiv 2408.01827): ResNet-50 + spatial attention, style-transfer augmentation, the
    best public status figure found, as its abstract reports it;
  * Mermet et al.: ResNeXt, status on their own split (not the official one: not comparable).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Anchor:
    source: str
    model: str
    arch: str | None         # kaogen's name of the architecture, when kaogen has it
    split: str
    gender: float | None     # test accuracy in %
    status: float | None


PAPER = "KaoKore paper, Table 2"
ANCHORS = (
    Anchor(PAPER, "VGG-11", "vgg11", "official", 92.03, 78.74),
    Anchor(PAPER, "AlexNet", "alexnet", "official", 91.27, 78.93),
    Anchor(PAPER, "ResNet-18", "resnet18", "official", 92.98, 82.16),
    Anchor(PAPER, "ResNet-34", "resnet34", "official", 93.55, 84.82),
    Anchor(PAPER, "MobileNet-v2", "mobilenet_v2", "official", 95.06, 82.35),
    Anchor(PAPER, "DenseNet-121", "densenet121", "official", 94.31, 79.70),
    Anchor(PAPER, "Inception-v3", "inception_v3", "official", 96.58, 84.25),
    Anchor("Mermet et al.", "ResNeXt", "resnext50_32x4d", "their own", None, 85.009),
    Anchor("ST-SACLF (arXiv 2408.01827), as reported", "ResNet-50 + spatial attention", None, "official", None, 87.24),
)


def paper_anchor(arch: str) -> Anchor | None:
    return next((a for a in ANCHORS if a.arch == arch and a.source == PAPER), None)


def comparison_table(arch: str, label: str, accuracy: float, split: str, subset: str = "test",
                     faces: int | None = None) -> str:
    """The published numbers in the paper's format (gender / status test accuracy), with this run's row
    marked `this run` and the row of the same architecture marked `<-`."""
    def cell(v):
        return "-" if v is None else f"{v:.2f}"

    mine = f"{100 * accuracy:.2f}"
    rows = [(a.source, a.model, a.split, cell(a.gender), cell(a.status), "<-" if a.arch == arch else "")
            for a in ANCHORS]
    n = f", {faces:,} faces" if faces else ""
    rows.append((f"this run ({subset}{n})", arch, split, mine if label == "gender" else "", mine if label == "status" else "", ""))
    head = ("source", "model", "split", "gender %", "status %", "")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(6)]
    fmt = "  ".join(f"{{:{'>' if i in (3, 4) else '<'}{w}}}" for i, w in enumerate(widths))
    lines = ["Published test accuracies (the papers' numbers, not re-run here) and this run:",
             fmt.format(*head).rstrip(), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*r).rstrip() for r in rows]
    if split != "official":
        lines.append(f"(this run uses the {split} split: not comparable with the official-split rows)")
    return "\n".join(lines)
