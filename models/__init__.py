"""Models the explainers can only query. No streamlit import here (the web app is one client of many)."""
from .base import (EXPLAINED_SCORE, BlackBox, QueryBudgetExceeded, cache_root, device_name, explained_view,
                   pick_device)
from .images import DecodedImage, ImageDecodeError, ImageTransform, decode_image
from .registry import ModelInfo, list_models, load_model, model_info, register_model
from . import zoo  # noqa: F401  registers the bundled image models
from .loaders import ModelLoadError, load_onnx, load_torchscript, load_torchvision
from .backends import BACKENDS, use_backend
from .http import HttpBlackBox
from .chat import ChatBlackBox

try:  # the bundled audio model registers itself when its module is present
    from . import audio  # noqa: F401
except ImportError:  # pragma: no cover - only while the audio model is being built
    pass

__all__ = ["EXPLAINED_SCORE", "explained_view", "BlackBox", "QueryBudgetExceeded", "cache_root", "device_name", "pick_device", "DecodedImage", "ImageDecodeError",
           "ImageTransform", "decode_image", "ModelInfo", "list_models", "load_model", "model_info",
           "register_model", "ModelLoadError", "load_onnx", "load_torchscript", "BACKENDS", "use_backend", "load_torchvision", "HttpBlackBox",
           "ChatBlackBox"]
