"""Black-box saliency methods. No streamlit import here.

Every module in this package that defines an ``@register_explainer`` class is imported below, so adding a
method is adding one file.
"""
import importlib
import pkgutil

from .base import Estimate, Explainer, Param, Step
from .registry import explainer_class, get_explainer, list_explainers, register_explainer

_INFRASTRUCTURE = {"base", "registry", "engine", "masks", "metrics"}
for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _mod not in _INFRASTRUCTURE and not _mod.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod}")

__all__ = ["Estimate", "Explainer", "Param", "Step", "explainer_class", "get_explainer", "list_explainers",
           "register_explainer"]
