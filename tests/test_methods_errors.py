"""Bad method settings fail before training, naming the value and what is allowed."""

import pytest
import torch
from torch import nn

from adaptlab.methods import METHODS, MethodConfig, get_method
from adaptlab.models import tiny_llama

ADAPTERS = ["lora", "dora", "qlora", "loftq", "qalora", "ia3"]


def model():
    return tiny_llama()[0].float()


@pytest.mark.parametrize("name", ADAPTERS)
def test_unknown_target_module(name):
    with pytest.raises(ValueError, match=r"\['c_attn'\].*available: down_proj"):
        get_method(name).apply(model(), MethodConfig(name=name, target_modules=["c_attn"], group_size=16, r=2))


@pytest.mark.parametrize("name", ["lora", "dora", "qlora", "loftq"])
def test_rank_larger_than_layer(name):
    with pytest.raises(ValueError, match=r"rank r=128 is larger than layer .* r <= 64"):
        get_method(name).apply(model(), MethodConfig(name=name, r=128))


def test_qalora_rank_after_pooling():
    with pytest.raises(ValueError, match=r"rank r=8 .* r <= 2"):
        get_method("qalora").apply(model(), MethodConfig(name="qalora", r=8, group_size=32))


@pytest.mark.parametrize("name,bits", [("qalora", 4), ("loftq", 2)])
def test_group_size_must_divide_in_features(name, bits):
    with pytest.raises(ValueError, match=r"group_size=24 does not divide the input dimension 64 .* allowed group sizes: \[1, 2, 4, 8, 16, 32, 64\]"):
        get_method(name).apply(model(), MethodConfig(name=name, r=2, group_size=24, bits=bits))


def test_unsupported_bits():
    with pytest.raises(ValueError, match=r"bits=5 .* choose one of \(2, 3, 4, 8\)"):
        get_method("qalora").apply(model(), MethodConfig(name="qalora", r=2, bits=5, group_size=16))


def test_model_without_linear_layers_is_a_mismatch():
    class Conv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 4, 1)

        def get_output_embeddings(self):
            return None

        def get_input_embeddings(self):
            return None

    with pytest.raises(ValueError, match="not linear layers of this model"):
        get_method("qalora").apply(Conv(), MethodConfig(name="qalora", target_modules=["conv"]))


def test_errors_leave_the_model_untouched():
    m = model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(ValueError):
        get_method("qalora").apply(m, MethodConfig(name="qalora", r=2, group_size=24))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert isinstance(m.model.layers[0].self_attn.q_proj, nn.Linear)


def test_unknown_method_lists_names():
    with pytest.raises(ValueError, match="choose one of: " + ", ".join(sorted(METHODS))):
        get_method("qlora2")
