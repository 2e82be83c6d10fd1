"""The int8 variant: built from the fp32 weights on calibration photos, saved as
TorchScript in the archive, chosen by model-config.yaml's ``precision``."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import load_handler_module, make_context, make_photo, scene_photos


@pytest.fixture(scope="module")
def scene_batch(tmp_path_factory, spec):
    from lizaalert_tagger.vision.preprocess import preprocess_image

    folder = scene_photos(tmp_path_factory.mktemp("scenes"), 6, seed=11)
    return torch.stack([preprocess_image(p.read_bytes(), spec.preprocessing) for p in sorted(folder.iterdir())])


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a, b, dim=1)


def test_int8_model_follows_the_fp32_model(model_dir, spec, scene_batch):
    """The archive-shaped dir's int8 file is the same network: logits point the same way,
    while a differently seeded fp32 network does not (so the check can fail)."""
    from lizaalert_tagger.vision.model import LizaAlertTagger, load_tagger
    from lizaalert_tagger.vision.quantize import INT8_FILENAME, load_int8

    fp32 = load_tagger(model_dir / "weights.pt", spec)
    int8 = load_int8(model_dir / INT8_FILENAME)
    torch.manual_seed(99)
    other = LizaAlertTagger(spec).eval()
    with torch.inference_mode():
        reference, quantized, unrelated = fp32(scene_batch), int8(scene_batch), other(scene_batch)
    assert quantized.shape == (len(scene_batch), spec.num_logits)
    assert _cosine(reference, quantized).min() > 0.99
    assert _cosine(reference, unrelated).max() < 0.9
    # not a copy of the fp32 model: the weights really are int8
    assert not torch.equal(reference, quantized)


def test_save_and_load_round_trip(tmp_path, model_dir, spec, scene_batch):
    from lizaalert_tagger.vision.model import load_tagger
    from lizaalert_tagger.vision.quantize import load_int8, quantize_int8, save_int8

    module = quantize_int8(load_tagger(model_dir / "weights.pt", spec), scene_batch[:3])
    path = save_int8(module, tmp_path / "q.pt")
    with torch.inference_mode():
        assert torch.equal(module(scene_batch), load_int8(path)(scene_batch))


def test_load_int8_errors_say_what_is_wrong(tmp_path):
    from lizaalert_tagger.vision.quantize import load_int8

    with pytest.raises(FileNotFoundError, match="lizaalert-archive --int8"):
        load_int8(tmp_path / "weights_int8.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not torchscript")
    with pytest.raises(ValueError, match="not an int8 TorchScript model"):
        load_int8(bad)


def test_quantize_refuses_bad_calibration(model_dir, spec):
    from lizaalert_tagger.vision.model import load_tagger
    from lizaalert_tagger.vision.quantize import quantize_int8

    with pytest.raises(ValueError, match=r"Expected calibration images \[N>0, 3, H, W\]. Got \(0, 3, 256, 256\)"):
        quantize_int8(load_tagger(model_dir / "weights.pt", spec), torch.zeros(0, 3, 256, 256))


def test_precision_setting_is_checked():
    from lizaalert_tagger.serving.settings import HandlerSettings

    assert HandlerSettings.from_yaml({"precision": "int8"}).precision == "int8"
    with pytest.raises(ValueError, match=r"expected one of \('fp32', 'bf16', 'int8'\), got 'int4'"):
        HandlerSettings.from_yaml({"precision": "int4"})


def test_shipped_config_serves_int8_and_the_handler_agrees_with_fp32(model_dir, spec):
    """The handler built from the shipped config runs the int8 TorchScript; its answers
    match an fp32 handler's probabilities closely."""
    LizaAlertHandler = load_handler_module(model_dir).LizaAlertHandler

    assert yaml.safe_load((model_dir / "model-config.yaml").read_text())["handler"]["precision"] == "int8"
    int8 = LizaAlertHandler()
    int8.initialize(make_context(model_dir))
    assert isinstance(int8.model, torch.jit.ScriptModule)
    fp32 = LizaAlertHandler()
    fp32.initialize(make_context(model_dir, yaml_overrides={"handler": {"precision": "fp32"}}))
    assert not isinstance(fp32.model, torch.jit.ScriptModule)

    photos = [{"body": make_photo("JPEG", size=(800, 600), color=c)} for c in ((30, 90, 40), (200, 200, 220), (20, 20, 60))]
    from lizaalert_tagger.serving.service import decode_photo
    from lizaalert_tagger.vision.preprocess import image_to_tensor

    images = torch.stack([image_to_tensor(decode_photo(p["body"], spec.preprocessing, int8.service.settings).image, spec.preprocessing)
                          for p in photos])
    logits = {name: h.service.forward(images) for name, h in (("int8", int8), ("fp32", fp32))}
    assert _cosine(logits["int8"], logits["fp32"]).min() > 0.99
    answers = [json.loads(a) for a in int8.handle(photos, make_context(model_dir, batch_size=len(photos)))]
    assert [set(a["attributes"]) for a in answers] == [set(spec.keys)] * len(photos)


def test_archive_refuses_int8_config_without_the_variant(tmp_path, seeded_weights):
    from lizaalert_tagger.ops.archive import build_archive
    from lizaalert_tagger.common.paths import HANDLER_DIR

    with pytest.raises(ValueError, match="asks for precision int8"):
        build_archive(seeded_weights, "1.0", config=HANDLER_DIR / "model-config.yaml", store=tmp_path, int8=False)


def test_archive_validates_the_config_it_packs(tmp_path, seeded_weights):
    """A precision the worker would refuse is refused when the archive is built, not at worker start."""
    from lizaalert_tagger.ops.archive import build_archive
    from lizaalert_tagger.common.paths import HANDLER_DIR

    config = yaml.safe_load((HANDLER_DIR / "model-config.yaml").read_text())
    config["handler"]["precision"] = "int4"
    (tmp_path / "model-config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=r"expected one of \('fp32', 'bf16', 'int8'\), got 'int4'"):
        build_archive(seeded_weights, "1.0", config=tmp_path / "model-config.yaml", store=tmp_path / "store")
    assert not (tmp_path / "store").exists()
