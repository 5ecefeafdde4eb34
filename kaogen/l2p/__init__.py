"""Learning to Paint (Huang, Heng and Zhou, ICCV 2019) on kaogen's stroke renderer.

    from kaogen.l2p import Agent, PaintOptions, paint
    agent = Agent.load()                                   # shipped checkpoint
    painting = paint(agent, [load_rgb("face.jpg")])[0]     # a kaogen.render.Painting
"""

from kaogen.l2p.agent import Agent
from kaogen.l2p.config import AgentConfig, RendererTrainConfig, TrainConfig
from kaogen.l2p.paint import PaintOptions, paint

__all__ = ["Agent", "AgentConfig", "PaintOptions", "RendererTrainConfig", "TrainConfig", "paint"]
