"""The model: shape, finiteness, trunk/head split, gradients, strict weights loading."""
import pickle

import pytest
import torch

from lizaalert_tagger.vision.model import LizaAlertTagger, load_tagger


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LizaAlertTagger().eval()


@pytest.mark.parametrize("batch", [1, 8])
def test_output_shape_and_no_nans(model, batch):
    with torch.inference_mode():
        out = model(torch.randn(batch, 3, 256, 256))
    assert out.shape == (batch, 20)
    assert torch.isfinite(out).all()


def test_trunk_and_heads_are_separate(model):
    with torch.inference_mode():
        x = torch.randn(2, 3, 256, 256)
        features = model.forward_features(x)
        assert features.shape == (2, 512)
        assert torch.allclose(model.forward_head(features), model(x))
    assert set(model.heads) == set(model.spec.keys)


def test_head_layout_follows_the_spec(model, spec):
    with torch.inference_mode():
        features = torch.randn(3, 512)
        out = model.forward_head(features)
        for a in spec.attributes:
            expected = model.heads[a.key](features)
            assert torch.allclose(out[:, a.logits[0]:a.logits[1]], expected)


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = LizaAlertTagger().train()
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_wrong_input_shape_is_explained(model):
    with pytest.raises(ValueError, match=r"Expected a \[batch, 3, H, W\] tensor. Got \(3, 256, 256\)"):
        model(torch.randn(3, 256, 256))


def test_load_round_trip(tmp_path, model):
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    loaded = load_tagger(path)
    x = torch.randn(1, 3, 256, 256)
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


class Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned > /tmp/lizaalert_pwned",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path, pickle_module=pickle)
    with pytest.raises(ValueError, match="refused to load"):
        load_tagger(path)


def test_whole_pickled_module_is_refused(tmp_path, model):
    path = tmp_path / "module.pt"
    torch.save(model, path)  # the seed's way: a pickled module
    with pytest.raises(ValueError, match="refused to load"):
        load_tagger(path)


def test_mismatched_weights_are_explained(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"trunk.conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(ValueError, match="do not match the spec's model: missing"):
        load_tagger(path)


def test_half_precision_safetensors_load_as_fp32(tmp_path, model):
    """The shipped format: fp16 safetensors (no pickle), loaded as fp32 weights that equal the rounded originals."""
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, str(path))
    loaded = load_tagger(path)
    for key, value in model.state_dict().items():
        got = loaded.state_dict()[key]
        assert got.dtype == value.dtype, key
        if value.is_floating_point():
            assert torch.equal(got, value.half().float()), key
        else:
            assert torch.equal(got, value), key


def test_broken_safetensors_is_a_clear_error(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_tagger(path)
