"""lizaalert-profile: how py-spy's stacks are read and sorted (a real run: tests/integration/test_bench.py)."""
from lizaalert_tagger.bench.profile import categorise, read_raw, summarise_stacks

DECODE = ["<module> (ts/model_service_worker.py:10)", "handle (tagger_handler.py:150)",
          "decode_image (lizaalert_tagger/vision/preprocess.py:143)", "load (PIL/ImageFile.py:300)"]
MODEL = ["<module> (ts/model_service_worker.py:10)", "handle (tagger_handler.py:150)",
         "_run_model (tagger_handler.py:125)", "run_inference (lizaalert_tagger/serving/service.py:245)", "_call_impl (torch/nn/modules/module.py:1)"]
READ = ["<module> (ts/model_service_worker.py:10)", "retrieve_msg (ts/protocol/otf_message_handler.py:33)",
        "_retrieve_buffer (ts/protocol/otf_message_handler.py:181)"]


def test_a_sample_counts_for_the_innermost_step_it_is_in():
    assert categorise(DECODE) == "decode (Pillow)"  # inside handle, but decoding
    assert categorise(MODEL) == "network (int8 model)"
    assert categorise(READ) == "protocol: read request"
    assert categorise(["main (x.py:1)", "something_else (y.py:2)"]) == "other"


def test_raw_stacks_are_read_and_summarised(tmp_path):
    raw = tmp_path / "spy.txt"
    raw.write_text(";".join(DECODE) + " 6\n" + ";".join(MODEL) + " 3\n" + ";".join(READ) + " 1\nnot a stack line\n")
    stacks = read_raw(raw)
    assert sum(stacks.values()) == 10 and stacks[tuple(DECODE)] == 6
    summary = summarise_stacks(stacks)
    assert summary["samples"] == 10
    assert summary["share"] == {"decode (Pillow)": 0.6, "network (int8 model)": 0.3, "protocol: read request": 0.1}
    assert summary["self_top"][0] == (DECODE[-1], 0.6)
    assert read_raw(tmp_path / "missing.txt") == {} and summarise_stacks(read_raw(tmp_path / "missing.txt"))["samples"] == 0
