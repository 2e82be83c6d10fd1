"""Java properties as TorchServe reads and writes them: the project's file edited in place, and
values escaped and read back the way ``Properties.store`` / ``Properties.load`` do."""
import pytest

from lizaalert_tagger.ops.properties import java_properties, java_properties_value, read_properties, write_properties


def test_write_replaces_and_appends_keeping_comments(tmp_path):
    source = tmp_path / "config.properties"
    source.write_text("# the ports\ninference_address=http://127.0.0.1:8080\n\n#load_models=x.mar\nload_models=a.mar\n")
    target = tmp_path / "out.properties"
    write_properties(source, target, {"load_models": "all", "model_store": "/srv/store"})
    text = target.read_text()
    assert text.splitlines() == ["# the ports", "inference_address=http://127.0.0.1:8080", "", "#load_models=x.mar",
                                 "load_models=all", "model_store=/srv/store"]
    assert read_properties(target) == {"inference_address": "http://127.0.0.1:8080", "load_models": "all",
                                       "model_store": "/srv/store"}


@pytest.mark.parametrize("value", [
    '{"models": {"lizaalert_tagger": {"1.0": {"marName": "a.mar"}}}}',  # colons, braces: a snapshot's JSON
    "C:\\store\\tab\there",
    "  leading blanks and a trailing one ",
    "кириллица and an emoji \U0001F681",  # beyond Latin-1 and beyond the BMP (a surrogate pair)
    "#not a comment = or a key: separator !",
    "line\nbreaks\r\nand\fform feeds",
])
def test_escaped_values_read_back_unchanged(value):
    assert java_properties(f"model_snapshot={java_properties_value(value)}\n") == {"model_snapshot": value}


def test_what_properties_store_writes_is_read():
    text = ("#Saving snapshot\n! a comment too\nkey\\:with\\=escapes = one \\\n    continued\nspaced value: x\n"
            "unicode=\\u0436\n")
    assert java_properties(text) == {"key:with=escapes": "one continued", "spaced": "value: x", "unicode": "ж"}
