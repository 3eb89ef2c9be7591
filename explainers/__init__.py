"""Black-box saliency methods. No streamlit import here.

Every module of this package is imported below, so adding a method is adding one file whose class carries
``@register_explainer`` (the registry holds exactly the decorated classes). Shared modules (base, registry,
masks, segments, estimators) register nothing and cost nothing to import.
"""
import importlib
import pkgutil

from .base import Estimate, Explainer, Metric, Param, Readout, Step
from .registry import explainer_class, get_explainer, list_explainers, register_explainer, unregister_explainer

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _mod.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod}")

__all__ = ["Estimate", "Explainer", "Metric", "Param", "Readout", "Step", "explainer_class", "get_explainer",
           "list_explainers", "register_explainer", "unregister_explainer"]
