"""Which models a TorchServe start registers, read as TorchServe reads them: from the archives'
manifests, whatever the files are called (the real start: tests/integration/test_versions.py)."""
import pytest

from lizaalert_tagger.ops.model_state import archive_model_name, startup_models


@pytest.fixture()
def store(tmp_path, manifest_archive):
    store = tmp_path / "store"
    manifest_archive(store / "lizaalert_tagger.mar", version="1.0")
    manifest_archive(store / "lizaalert_tagger_2.0.mar", version="2.0")
    manifest_archive(store / "other.mar", model="other_model")
    return store


def test_versioned_archives_are_named_by_their_manifest(store):
    assert archive_model_name(store / "lizaalert_tagger_2.0.mar") == "lizaalert_tagger"
    assert startup_models("lizaalert_tagger_2.0.mar", store) == ["lizaalert_tagger"]
    assert startup_models(" lizaalert_tagger.mar , other.mar ,", store) == ["lizaalert_tagger", "other_model"]


def test_all_is_every_model_of_the_store_once(store):
    assert startup_models("all", store) == ["lizaalert_tagger", "other_model"]
    assert startup_models("ALL", store) == ["lizaalert_tagger", "other_model"]


def test_explicit_names_directories_and_nothing(store):
    assert startup_models("tagger=lizaalert_tagger_2.0.mar", store) == ["tagger"]
    assert startup_models("some_model_dir", store) == ["some_model_dir"]
    assert startup_models("", store) == [] and startup_models("standalone", store) == []


def test_an_archive_without_a_manifest_is_a_clear_error(store):
    (store / "broken.mar").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"broken\.mar: not a model archive with a manifest"):
        startup_models("broken.mar", store)
    with pytest.raises(ValueError, match=r"missing\.mar: not a model archive"):
        startup_models("missing.mar", store)
