"""Overlay colours come from the answer's binary attributes, so a new attribute gets a colour of its own."""
from lizaalert_tagger.common.overlay import PALETTE, colour_of
from lizaalert_tagger.common.spec import load_spec


def _answer(spec) -> dict:
    """An answer's shape: class probabilities for categorical attributes, a score for binary ones."""
    return {"attributes": {a.key: ({"code": 0, "probabilities": {}} if not a.is_binary else {"code": 0, "score": 0.9})
                           for a in spec.attributes}}


def test_every_binary_attribute_has_its_own_colour(spec, twelve_attribute_spec):
    for current in (spec, load_spec(twelve_attribute_spec)):
        binary = [a.key for a in current.attributes if a.is_binary]
        colours = [colour_of(_answer(current), key) for key in binary]
        assert len(set(colours)) == len(binary), colours
        assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in colours)
    shipped = [colour_of(_answer(spec), a.key) for a in spec.attributes if a.is_binary]
    assert shipped == list(PALETTE[:len(shipped)])  # the shipped attributes keep the palette's colours, in order
