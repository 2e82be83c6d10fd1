"""Import of the seed's checkpoints: a pickled whole module whose class is not importable."""
import os
import sys
import types

import pytest
import torch
from torch import nn
from torchvision.models import resnet34

from lizaalert_tagger.seed_import import convert, read_seed_checkpoint
from lizaalert_tagger.decode import decode_logits
from lizaalert_tagger.model import LizaAlertTagger

SEED_ORDER = [("avia", 2), ("auto", 2), ("bpla", 2), ("diver", 2), ("cynologist", 2), ("horses", 2),
              ("hugs", 2), ("sherp", 2), ("timeday", 4), ("timeyear", 5), ("place", 3)]


def seed_model_class():
    """The seed's layout, defined in a throw-away module as a training script would."""
    module = types.ModuleType("seed_training_script")

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.resnet = resnet34(weights=None)
            self.model_wo_fc = nn.Sequential(*(list(self.resnet.children())[:-1]))
            for name, n in SEED_ORDER:
                setattr(self, name, nn.Sequential(nn.Dropout(0.2), nn.Linear(512, n)))

        def forward(self, x):
            x = torch.flatten(self.model_wo_fc(x), 1)
            return {name: getattr(self, name)(x) for name, _ in SEED_ORDER}

    Model.__module__ = module.__name__
    Model.__qualname__ = "Model"
    module.Model = Model
    return module, Model


@pytest.fixture(scope="module")
def seed_checkpoint(tmp_path_factory):
    module, Model = seed_model_class()
    sys.modules[module.__name__] = module
    try:
        torch.manual_seed(7)
        model = Model().eval()
        # non-trivial BN statistics, so that a dropped buffer would show
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.8, 1.2)
        path = tmp_path_factory.mktemp("seed") / "seed.pth"
        torch.save(model, path)  # the seed's way: the whole pickled module
    finally:
        del sys.modules[module.__name__]  # now the class is not importable
    return path, model


def test_class_is_not_importable_but_the_tensors_are_read(seed_checkpoint):
    path, _ = seed_checkpoint
    with pytest.raises(Exception):
        torch.load(path, weights_only=False)  # a plain load needs the seed's class
    root = read_seed_checkpoint(path)
    assert "resnet" in root.state["_modules"] and "timeday" in root.state["_modules"]


def test_converted_model_gives_the_seed_probabilities(seed_checkpoint, spec):
    path, seed = seed_checkpoint
    state, seed_spec = convert(read_seed_checkpoint(path), spec)
    assert seed_spec.preprocessing.mean is None and seed_spec.preprocessing.std is None
    ours = LizaAlertTagger(seed_spec).eval()
    ours.load_state_dict(state)
    torch.manual_seed(0)
    x = torch.rand(4, 3, 256, 256)
    with torch.inference_mode():
        seed_out = seed(x)
        logits = ours(x)
    answers = decode_logits(logits, seed_spec)
    names = {"time_of_day": "timeday", "season": "timeyear", "terrain": "place", "sherp": "sherp", "car": "auto",
             "aviation": "avia", "drone": "bpla", "horses": "horses", "dog_handler": "cynologist", "diver": "diver", "hugs": "hugs"}
    for a in seed_spec.attributes:
        seed_probs = torch.softmax(seed_out[names[a.key]], dim=1)
        part = logits[:, a.logits[0]:a.logits[1]]
        if a.is_binary:
            assert torch.allclose(torch.sigmoid(part[:, 0]), seed_probs[:, 1], atol=1e-5)
            for i, answer in enumerate(answers):  # decoded code = the seed's argmax
                assert answer["attributes"][a.key]["code"] == int(seed_probs[i].argmax())
        else:
            assert torch.allclose(torch.softmax(part, 1), seed_probs, atol=1e-5)
            for i, answer in enumerate(answers):
                probs = list(answer["attributes"][a.key]["probabilities"].values())
                assert probs == pytest.approx(seed_probs[i].tolist(), abs=1e-5)


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
    from lizaalert_tagger.archive import build_archive
    from conftest import make_photo, start_server
    from lizaalert_tagger.seed_import import main
    from lizaalert_tagger.client import TaggerClient

    path, _ = seed_checkpoint
    assert main([str(path), "--out", str(tmp_path / "seed")]) == 0
    store = tmp_path / "store"
    build_archive(tmp_path / "seed" / "weights.pt", "seed-1", spec=tmp_path / "seed" / "attributes.json",
                  store=store, file_name="lizaalert_tagger.mar")
    server = start_server(tmp_path / "run", store)
    try:
        answer = TaggerClient(server.inference_url, server.management_url, server.key_file).predict(make_photo("JPEG"))
        assert answer["model"]["version"] == "seed-1" and len(answer["attributes"]) == 11
    finally:
        server.stop()
