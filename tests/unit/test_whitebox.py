"""White-box references: gradient equals autograd, IG completeness, Grad-CAM on the real model and the cat."""
import pytest
import torch

from explainers import get_explainer
from models import load_model


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny_cnn", device="cpu", score_mode="logit")


def test_gradient_equals_autograd(tiny):
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    est = list(get_explainer("gradient").stream(tiny, x, 4))[-1]
    xv = x.clone().requires_grad_(True)
    tiny.module(xv.unsqueeze(0))[0, 4].backward()
    torch.testing.assert_close(est.gradient, xv.grad)
    torch.testing.assert_close(est.saliency, xv.grad.abs().amax(0))


def test_gradient_leaves_the_shared_module_without_parameter_grads():
    bb = load_model("tiny_cnn", device="cpu")
    get_explainer("gradient").explain(bb, torch.zeros(3, 32, 32), 1)
    assert all(p.grad is None for p in bb.module.parameters())


def test_integrated_gradients_is_complete(tiny):
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    view = tiny.view()
    sal = get_explainer("integrated_gradients", steps=200).explain(view, x, 2)
    assert view.queries == 200
    with torch.no_grad():
        delta = float(tiny.module(x[None])[0, 2] - tiny.module(torch.zeros(1, 3, 32, 32))[0, 2])
    assert float(sal.sum()) == pytest.approx(delta, rel=0.02, abs=1e-3)


def test_gradcam_shape_and_class_sensitivity_on_the_cat(effnet, cat_x):
    cat = get_explainer("gradcam").explain(effnet, cat_x, 285)
    cup = get_explainer("gradcam").explain(effnet, cat_x, 967)
    assert cat.shape == (224, 224) and cat.min() >= 0 and cat.max() > 0
    r = float(torch.corrcoef(torch.stack([cat.flatten(), cup.flatten()]))[0, 1])
    assert r < 0.9, f"Grad-CAM maps for 'Egyptian cat' and 'espresso' should differ (r={r:.2f})"


def test_gradcam_layer_is_settable_and_checked(effnet, cat_x):
    est = list(get_explainer("gradcam", layer="blocks.5").stream(effnet, cat_x, 285))[-1]
    assert est.extras["layer"] == "blocks.5" and est.saliency.shape == (224, 224)
    with pytest.raises(ValueError, match="no layer named"):
        get_explainer("gradcam", layer="nope").explain(effnet, cat_x, 285)
