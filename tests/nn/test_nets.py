import pytest
import torch
from torch import nn

from pyro_vae.config import Config
from pyro_vae.models import build_model
from pyro_vae.nn.nets import init_output_bias


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("batch_shape", [(5,), (3, 5)], ids=["B", "KxB"])
def test_shapes_with_leading_batch_dims(arch, batch_shape):
    vae = build_model(Config.from_flat(arch=arch, hidden=[32], latent_dim=4))
    loc, scale = vae.encoder(torch.rand(*batch_shape, 784))
    assert loc.shape == scale.shape == (*batch_shape, 4)
    assert (scale > 0).all()
    assert vae.decoder(torch.randn(*batch_shape, 4)).shape == (*batch_shape, 784)


def test_vectorized_input_equals_looped_input():
    vae = build_model(Config.from_flat(arch="conv", hidden=[16], latent_dim=3))
    z = torch.randn(2, 4, 3)
    torch.testing.assert_close(vae.decoder(z)[1], vae.decoder(z[1]))


def test_iwae_paper_architecture_is_expressible():
    vae = build_model(Config.from_flat(hidden=[200, 200], latent_dim=50, activation="tanh"))
    enc = [(m.in_features, m.out_features) for m in vae.encoder.modules() if isinstance(m, nn.Linear)]
    dec = [(m.in_features, m.out_features) for m in vae.decoder.modules() if isinstance(m, nn.Linear)]
    assert enc == [(784, 200), (200, 200), (200, 100)]  # last layer: loc and scale of 50 dims
    assert dec == [(50, 200), (200, 200), (200, 784)]
    assert any(isinstance(m, nn.Tanh) for m in vae.encoder.modules())
    assert not any(isinstance(m, nn.ReLU) for m in vae.modules())


def test_output_bias_is_the_logit_of_the_mean_pixel():
    vae = build_model(Config.from_flat(hidden=[8], latent_dim=2))
    mean = torch.rand(784) * 0.9 + 0.05
    vae.init_from_data(mean)
    torch.testing.assert_close(torch.sigmoid(vae.decoder.output_layer.bias), mean)


def test_conv_output_bias_is_the_mean_logit():
    vae = build_model(Config.from_flat(arch="conv", hidden=[8], latent_dim=2))
    vae.init_from_data(torch.full((784,), 0.2))
    torch.testing.assert_close(torch.sigmoid(vae.decoder.output_layer.bias), torch.tensor([0.2]))
    init_output_bias(vae.decoder, torch.full((1, 28, 28), 0.5))
    torch.testing.assert_close(vae.decoder.output_layer.bias, torch.tensor([0.5]))


def test_a_likelihoods_start_is_the_mean_image_in_its_own_parameters():
    """The logistic's locations start at the mean image and its log-scales at -2; a mixture's
    components spread around it."""
    vae = build_model(Config.from_flat(hidden=[8], latent_dim=2, likelihood="logistic"))
    mean = torch.rand(784)
    vae.init_from_data(mean)
    bias = vae.decoder.output_layer.bias
    assert bias.shape == (2 * 784,)
    torch.testing.assert_close(bias[:784], mean)
    assert torch.equal(bias[784:], torch.full((784,), -2.0))
