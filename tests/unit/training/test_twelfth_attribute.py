"""A twelfth attribute needs only the spec and a drawing in scenes/: with a spec file that adds a binary
"tent" (drawn by the scene generator), scenes are generated, a model is trained for one step, archived,
and the handler answers with it in process. Every count comes from the spec."""
import json
import zipfile

import yaml

from conftest import HANDLER_DIR, load_handler_module, make_context
from lizaalert_tagger.common.spec import load_spec


def test_a_twelfth_attribute_from_scenes_to_the_handler(twelve_attribute_spec, spec, tmp_path):
    from lizaalert_tagger.ops.archive import build_archive
    from lizaalert_tagger.scenes import make_dataset
    from lizaalert_tagger.training.config import TrainConfig
    from lizaalert_tagger.training.run import train

    twelve = load_spec(twelve_attribute_spec)
    assert len(twelve.attributes) == len(spec.attributes) + 1 and twelve["tent"].is_binary

    scenes = tmp_path / "scenes"
    rows = make_dataset(scenes, 16, 8, max_size=320, spec=twelve, tag_boost=4.0)
    assert any(labels["tent"] for _, labels in rows)
    header = (scenes / "labels.csv").read_text(encoding="utf-8").splitlines()[0].split(";")
    assert len(header) == 1 + len(twelve.attributes) and "Палатка" in header

    out = tmp_path / "trained"
    result = train(TrainConfig(images=scenes / "images", labels=scenes / "labels.csv", out=out, spec=twelve_attribute_spec,
                               epochs=1, final_epochs=0, low_res=64, batch_size=12, val_fraction=0.25, precision="fp32",
                               jobs=1, log_seconds=0, checkpoint_minutes=0))
    assert result.finished and result.image_passes == 12  # one step: 12 training photos, 4 held out
    assert set(result.metrics["validation"]["f1"]) == set(twelve.keys)
    assert load_spec(out / "attributes.json").keys == twelve.keys

    config = yaml.safe_load((HANDLER_DIR / "model-config.yaml").read_text())
    config["handler"]["precision"] = "fp32"  # no int8 variant: nothing to calibrate
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "model-config.yaml").write_text(yaml.safe_dump(config))
    archive = build_archive(out / "weights.pt", "0.1-tent", spec=out / "attributes.json",
                            config=tmp_path / "config" / "model-config.yaml", store=tmp_path / "store",
                            file_name="lizaalert_tagger.mar", int8=False)
    model_dir = tmp_path / "model"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(model_dir)

    handler = load_handler_module(model_dir).LizaAlertHandler()
    handler.initialize(make_context(model_dir))
    photos = sorted((scenes / "images").iterdir())[:3]
    replies = handler.handle([{"body": p.read_bytes()} for p in photos], make_context(model_dir, batch_size=3))
    for reply in replies:
        answer = json.loads(reply)
        assert list(answer["attributes"]) == list(twelve.keys)
        assert answer["attributes"]["tent"]["code"] in (0, 1)
        assert answer["attributes"]["tent"]["label"] in ("tent", "no tent")
