"""How the agent's strokes reach a canvas: exactly (environment, painting) or differentiably (learning).

    model = StrokeModel(cfg)                       # cfg: AgentConfig
    canvas = model.paint(canvas, strokes)          # differentiable in `strokes`
    canvas = paint_exact(canvas, strokes)          # the environment: kaogen's exact rasteriser

canvas (B, 3, S, S) in [0, 1]; strokes (B, K, 13) in [0, 1], laid in order k = 0..K-1.
The differentiable model is the soft rasteriser (default) or a trained NeuralRenderer.
"""

from __future__ import annotations

import torch

from kaogen.checkpoint import load_checkpoint
from kaogen.errors import KaogenError
from kaogen.l2p.config import AgentConfig
from kaogen.l2p.neural_renderer import NeuralRenderer
from kaogen.render import strokes as S
from kaogen.render.composite import composite
from kaogen.render.rasterize import rasterize
from kaogen.render.soft import soft_rasterize


def paint_exact(canvas: torch.Tensor, strokes: torch.Tensor) -> torch.Tensor:
    B, _, H, W = canvas.shape
    alpha = rasterize(strokes.detach().reshape(-1, S.NUM_FIELDS), H, W).view(B, -1, H, W)
    return composite(canvas, alpha, S.color(strokes.detach()))


class StrokeModel(torch.nn.Module):
    def __init__(self, cfg: AgentConfig):
        super().__init__()
        self.kind, self.softness, self.neural = cfg.renderer, cfg.softness, None
        if cfg.renderer == "neural":
            if not cfg.renderer_checkpoint:
                raise KaogenError("renderer = \"neural\" needs renderer_checkpoint (train one with `kaogen train-renderer`)")
            ck = load_checkpoint(cfg.renderer_checkpoint, kind="l2p-renderer")
            net = NeuralRenderer(ck.config["canvas"])
            net.load_state_dict(ck.state["renderer"])
            if net.canvas != cfg.canvas:
                raise KaogenError(f"{cfg.renderer_checkpoint} renders {net.canvas} px strokes, the agent paints {cfg.canvas} px")
            self.neural = net.requires_grad_(False).eval()

    def alpha(self, strokes: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """(N, 13) -> (N, H, W) alpha in [0, 1], differentiable in the strokes."""
        if self.neural is not None:
            return self.neural(strokes[:, : len(S.SHAPE_FIELDS)])
        return soft_rasterize(strokes, H, W, softness=self.softness)

    def paint(self, canvas: torch.Tensor, strokes: torch.Tensor) -> torch.Tensor:
        B, _, H, W = canvas.shape
        alpha = self.alpha(strokes.reshape(-1, S.NUM_FIELDS), H, W).view(B, -1, H, W)
        return composite(canvas, alpha, S.color(strokes))
