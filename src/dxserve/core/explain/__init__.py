"""Explanations: saliency maps (Grad-CAM from the model's own outputs, or occlusion for any
image model), placed on the input image and measured against known lesion masks."""

from dxserve.core.explain.localisation import pointing_hit, relevance_mass
from dxserve.core.explain.occlusion import occlusion_inputs, occlusion_map
from dxserve.core.explain.saliency import SaliencyMap

__all__ = ["SaliencyMap", "occlusion_inputs", "occlusion_map", "pointing_hit", "relevance_mass"]
