"""Import of the seed's checkpoints: a pickled whole module whose class is not importable."""
import io
import os
import sys
import types

import pytest
import torch
import yaml
from torch import nn
from torchvision.models import resnet34

from lizaalert_tagger.training.seed_import import convert, read_seed_checkpoint
from lizaalert_tagger.vision.answers import decode_logits
from lizaalert_tagger.vision.model import LizaAlertTagger

# The seed's forward pass: output keys in its order, with each head's width.
SEED_ORDER = [("avia", 2), ("auto", 2), ("bpla", 2), ("diver", 2), ("cynologist", 2), ("horses", 2),
              ("hugs", 2), ("sherp", 2), ("timeday", 4), ("timeyear", 5), ("place", 3)]
# The original code's module attribute names where they differ from the output keys.
ORIGINAL_ATTRIBUTES = {"timeday": "timeOfTheDay", "timeyear": "timeOfTheYear"}
# Our attribute keys -> the seed's output keys.
SEED_KEYS = {"time_of_day": "timeday", "season": "timeyear", "terrain": "place", "sherp": "sherp", "car": "auto",
             "aviation": "avia", "drone": "bpla", "horses": "horses", "dog_handler": "cynologist", "diver": "diver",
             "hugs": "hugs"}


def seed_model_class(heads: str = "original", trunk: str = "both"):
    """The seed's layout, defined in a throw-away module as a training script would.

    ``heads``: "original" names the two time heads as the original code did
    (``timeOfTheDay``, ``timeOfTheYear``), "output_keys" like the forward pass's keys.
    ``trunk``: "both" (``resnet`` and ``model_wo_fc`` sharing their layers, as the
    original), or only one of ``resnet`` / ``model_wo_fc``.
    """
    module = types.ModuleType("seed_training_script")
    attribute = (lambda key: ORIGINAL_ATTRIBUTES.get(key, key)) if heads == "original" else (lambda key: key)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            resnet = resnet34(weights=None)
            if trunk in ("both", "resnet"):
                self.resnet = resnet
            if trunk in ("both", "model_wo_fc"):
                self.model_wo_fc = nn.Sequential(*(list(resnet.children())[:-1]))
            for key, n in SEED_ORDER:
                setattr(self, attribute(key), nn.Sequential(nn.Dropout(0.2), nn.Linear(512, n)))

        def forward(self, x):
            features = self.model_wo_fc(x) if hasattr(self, "model_wo_fc") else nn.Sequential(*list(self.resnet.children())[:-1])(x)
            x = torch.flatten(features, 1)
            return {key: getattr(self, attribute(key))(x) for key, _ in SEED_ORDER}

    Model.__module__ = module.__name__
    Model.__qualname__ = "Model"
    module.Model = Model
    return module, Model


def make_seed_checkpoint(folder, heads: str = "original", trunk: str = "both"):
    """A seed checkpoint as the seed wrote it (``torch.save`` of the whole module) and the module, in eval mode."""
    module, Model = seed_model_class(heads, trunk)
    sys.modules[module.__name__] = module
    try:
        torch.manual_seed(7)
        model = Model().eval()
        # non-trivial BN statistics, so that a dropped buffer would show
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.8, 1.2)
        path = folder / "seed.pth"
        torch.save(model, path)  # the seed's way: the whole pickled module
    finally:
        del sys.modules[module.__name__]  # now the class is not importable
    return path, model


@pytest.fixture(scope="module")
def seed_checkpoint(tmp_path_factory):
    """The original layout: heads ``timeOfTheDay``/``timeOfTheYear``, trunk ``resnet`` + ``model_wo_fc``."""
    return make_seed_checkpoint(tmp_path_factory.mktemp("seed"))


def seed_probabilities(seed_out: dict, key: str) -> torch.Tensor:
    """The seed's class probabilities of one of our attributes: softmax over its head's logits."""
    return torch.softmax(seed_out[SEED_KEYS[key]], dim=1)


def assert_same_probabilities(logits: torch.Tensor, seed_out: dict, spec, atol: float = 1e-5) -> None:
    """Our logits, decoded as the server decodes them, give the seed's probabilities and argmax codes."""
    answers = decode_logits(logits, spec)
    for a in spec.attributes:
        seed_probs = seed_probabilities(seed_out, a.key)
        part = logits[:, a.logits[0]:a.logits[1]]
        if a.is_binary:
            assert torch.allclose(torch.sigmoid(part[:, 0]), seed_probs[:, 1], atol=atol)
            for i, answer in enumerate(answers):  # decoded code = the seed's argmax
                assert answer["attributes"][a.key]["code"] == int(seed_probs[i].argmax())
        else:
            assert torch.allclose(torch.softmax(part, 1), seed_probs, atol=atol)
            for i, answer in enumerate(answers):
                probs = list(answer["attributes"][a.key]["probabilities"].values())
                assert probs == pytest.approx(seed_probs[i].tolist(), abs=atol)


def served_probabilities(answer: dict, a) -> list[float]:
    """An answer's class probabilities of attribute ``a`` in code order (binary: [absent, present])."""
    value = answer["attributes"][a.key]
    if a.is_binary:
        present = value["score"] if value["code"] == 1 else 1.0 - value["score"]
        return [1.0 - present, present]
    return list(value["probabilities"].values())


def test_class_is_not_importable_but_the_tensors_are_read(seed_checkpoint):
    path, seed = seed_checkpoint
    # the original layout: two heads stored under other names than their output keys
    assert "timeOfTheDay.1.weight" in seed.state_dict() and "timeday.1.weight" not in seed.state_dict()
    with pytest.raises(Exception):
        torch.load(path, weights_only=False)  # a plain load needs the seed's class
    root = read_seed_checkpoint(path)
    modules = root.state["_modules"]
    assert "resnet" in modules and "timeOfTheDay" in modules and "timeOfTheYear" in modules


@pytest.mark.parametrize("heads, trunk", [
    ("original", "both"),  # the original code: timeOfTheDay / timeOfTheYear, resnet + model_wo_fc
    ("output_keys", "both"),  # heads named like the forward pass's keys (timeday / timeyear)
    ("original", "model_wo_fc"),
    ("original", "resnet"),
])
def test_converted_model_gives_the_seed_probabilities(tmp_path, spec, heads, trunk):
    path, seed = make_seed_checkpoint(tmp_path, heads, trunk)
    state, seed_spec = convert(read_seed_checkpoint(path), spec)
    assert seed_spec.preprocessing.mean is None and seed_spec.preprocessing.std is None
    ours = LizaAlertTagger(seed_spec).eval()
    ours.load_state_dict(state)
    torch.manual_seed(0)
    x = torch.rand(4, 3, 256, 256)
    with torch.inference_mode():
        seed_out = seed(x)
        logits = ours(x)
    assert_same_probabilities(logits, seed_out, seed_spec)


def test_a_missing_head_names_both_spellings(seed_checkpoint, spec):
    root = read_seed_checkpoint(seed_checkpoint[0])
    del root.state["_modules"]["timeOfTheDay"]
    with pytest.raises(ValueError, match=r"seed heads missing: \['timeOfTheDay or timeday'\]"):
        convert(root, spec)


def test_a_head_under_both_spellings_is_refused(seed_checkpoint, spec):
    root = read_seed_checkpoint(seed_checkpoint[0])
    modules = root.state["_modules"]
    modules["timeyear"] = modules["timeOfTheYear"]
    with pytest.raises(ValueError, match="timeOfTheYear and timeyear"):
        convert(root, spec)


def test_malicious_pickle_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save(Evil(), path)
    with pytest.raises(ValueError):
        convert(read_seed_checkpoint(path), None)
    assert not marker.exists()


@pytest.mark.integration
def test_archive_from_the_import_serves(seed_checkpoint, spec, tmp_path):
    from lizaalert_tagger.ops.archive import build_archive
    from conftest import make_photo, start_server
    from lizaalert_tagger.training.seed_import import main
    from lizaalert_tagger.client.http import TaggerClient

    path, _ = seed_checkpoint
    assert main([str(path), "--out", str(tmp_path / "seed")]) == 0
    store = tmp_path / "store"
    build_archive(tmp_path / "seed" / "weights.pt", "seed-1", spec=tmp_path / "seed" / "attributes.json",
                  store=store, file_name="lizaalert_tagger.mar")
    server = start_server(tmp_path / "run", store)
    try:
        answer = TaggerClient(server.inference_url, server.management_url, server.key_file).predict(make_photo("JPEG"))
        assert answer["model"]["version"] == "seed-1" and list(answer["attributes"]) == list(spec.keys)
    finally:
        server.stop()


def parity_photos() -> list[bytes]:
    """Photos of several formats and sizes, none large enough for JPEG draft decoding (both sides >= 512 px):
    the seed decoded every photo at full size, so the served pixels must be the seed's pixels."""
    from conftest import make_photo
    from lizaalert_tagger import scenes

    photos = [make_photo("JPEG", size=(640, 480)), make_photo("PNG", size=(800, 600), color=(200, 30, 90)),
              make_photo("JPEG", size=(300, 500), color=(10, 10, 60), quality=90)]
    photos += [scenes.generate(11, i, 320, 500)[0] for i in range(3)]
    return photos


def seed_preprocess(photo: bytes) -> torch.Tensor:
    """The seed's preprocessing: PIL RGB, Resize((256, 256)), ToTensor(); no mean/std."""
    from PIL import Image
    from torchvision import transforms

    image = Image.open(io.BytesIO(photo)).convert("RGB")
    return transforms.Compose([transforms.Resize((256, 256)), transforms.ToTensor()])(image)


@pytest.mark.integration
def test_served_fp32_archive_gives_the_seed_probabilities(seed_checkpoint, tmp_path):
    """Seed checkpoint -> import -> fp32 archive -> TorchServe: each photo's served probabilities are
    the seed module's softmax (eval mode, the seed's preprocessing) within 1e-4."""
    from conftest import HANDLER_DIR, start_server
    from lizaalert_tagger.ops.archive import build_archive
    from lizaalert_tagger.training.seed_import import main
    from lizaalert_tagger.common.spec import load_spec

    path, seed = seed_checkpoint
    out = tmp_path / "seed"
    assert main([str(path), "--out", str(out)]) == 0
    config = yaml.safe_load((HANDLER_DIR / "model-config.yaml").read_text(encoding="utf-8"))
    config["handler"]["precision"] = "fp32"
    config["minWorkers"] = config["maxWorkers"] = 1  # one worker is enough here (2 cores, a training beside)
    config_path = tmp_path / "model-config.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    store = tmp_path / "store"
    build_archive(out / "weights.pt", "seed-1", spec=out / "attributes.json", store=store, int8=False,
                  config=config_path, file_name="lizaalert_tagger.mar")
    seed_spec = load_spec(out / "attributes.json")

    photos = parity_photos()
    with torch.inference_mode():
        seed_out = seed(torch.stack([seed_preprocess(photo) for photo in photos]))

    server = start_server(tmp_path / "run", store)
    try:
        client = server.client()
        answers = [client.predict(photo) for photo in photos]
    finally:
        server.stop()
    worst = 0.0
    for i, answer in enumerate(answers):
        assert answer["model"]["version"] == "seed-1"
        for a in seed_spec.attributes:
            expected = seed_probabilities(seed_out, a.key)[i].tolist()
            got = served_probabilities(answer, a)
            assert got == pytest.approx(expected, abs=1e-4), (i, a.key)
            worst = max(worst, *(abs(g - e) for g, e in zip(got, expected)))
    print(f"{len(photos)} photos x {len(seed_spec.attributes)} attributes: largest difference {worst:.2e}")
