"""The model contract on every architecture, on 28x28x1 and 32x32x3 inputs."""

from __future__ import annotations

import pytest
import torch

from robustviz import models
from robustviz.models import Normalize

IMAGE_ARCHS = [name for name in models.ARCHITECTURES if name != "mlp"]
NATURAL_DIM = {"smallcnn": 200, "lenet5": 84, "lenet_plus": 1024, "resnet18": 512, "preact_resnet18": 512,
               "wrn28_10": 640, "wrn34_10": 640, "wrn28_10_satrx": 640}


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("name", IMAGE_ARCHS)
def test_contract_on_mnist_and_cifar_shapes(name, shape):
    model = models.build(name, num_classes=10, in_channels=shape[0], seed=0).eval()
    x = torch.rand(2, *shape)
    with torch.no_grad():
        z = model.features(x)
        scores = model(x)
        assert z.shape == (2, NATURAL_DIM[name]) == (2, model.feat_dim)
        assert scores.shape == (2, 10)
        assert torch.allclose(scores, model.head(z))


@pytest.mark.parametrize("feat_dim", [2, 3, 64])
def test_smallcnn_feature_bottleneck(feat_dim):
    model = models.build("smallcnn", 10, 1, feat_dim=feat_dim, seed=0)
    z = model.features(torch.rand(5, 1, 28, 28))
    assert z.shape == (5, feat_dim)
    # A linear embedding with nothing after it, so features can take any sign (cube
    # prototypes have negative entries) and 2-D/3-D features are not squashed by a ReLU.
    last = model.body[-1]
    assert isinstance(last, torch.nn.Linear) and last.out_features == feat_dim


def test_mlp_on_2d_points():
    model = models.build("mlp", num_classes=3, in_channels=2, feat_dim=2, seed=0)
    assert model.features(torch.rand(7, 2)).shape == (7, 2)
    assert model(torch.rand(7, 2)).shape == (7, 3)


def test_normalisation_lives_inside_the_model():
    norm = Normalize((0.5, 0.25), (0.5, 0.25))
    x = torch.rand(3, 2, 4, 4)
    expected = (x - torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)) / torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)
    assert torch.allclose(norm(x), expected)
    model = models.build("smallcnn", 10, 1, mean=(0.1307,), std=(0.3081,))
    assert "normalize.mean" in model.state_dict()


def test_build_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a = models.build("smallcnn", 10, 1, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    b = models.build("smallcnn", 10, 1, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet50'.*smallcnn"):
        models.build("resnet50", 10, 3)
    with pytest.raises(ValueError, match="num_classes"):
        models.build("smallcnn", 1, 1)
    with pytest.raises(ValueError, match="mean has 1 entries"):
        models.build("smallcnn", 10, 3, mean=(0.5,), std=(0.5,))
