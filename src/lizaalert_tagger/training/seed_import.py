#!/usr/bin/env python3
"""Convert a checkpoint of the original (seed) model into our weights + spec, exactly.

    lizaalert-import-seed SEED.pth --out DIR
    lizaalert-archive --weights DIR/weights.pt --spec DIR/attributes.json --version seed-1

The seed saved its model with ``torch.save(model)``: a pickled whole module
whose class lived in its training script, so it cannot be imported here, and
unpickling it normally would run whatever code the pickle names. We read the
tensors **without executing code**: a restricted unpickler lets through only
the constructors of tensors, storages and ordered dicts, and turns every other
class the pickle names (the seed's model class, torch's layer classes) into an
inert record of its saved state. Then:

- trunk: ``resnet`` (a torchvision ResNet34) or, failing that, ``model_wo_fc``
  (its children without ``fc``) -> our ``trunk``;
- heads found under either spelling: the seed's module attributes
  (``timeOfTheDay``, ``timeOfTheYear``: state dict keys ``timeOfTheDay.1.weight``)
  or its forward pass's output keys (``timeday``, ``timeyear``), which an early
  description of the seed gave as the attribute names; the other nine heads are spelt alike;
- categorical heads (time of day, season, ``place``) copied in the seed's
  class order (output index = the seed's code);
- binary heads with two outputs (a two-way softmax) -> one logit
  ``w1 - w0``, ``b1 - b0``, since softmax([a, b])[1] = sigmoid(b - a); a
  one-output head (the seed's earlier version) is copied as is;
- the spec records the seed's preprocessing: squash resize to 256x256, values
  in [0, 1], no mean/std; thresholds 0.5 (= the seed's argmax).
"""
from __future__ import annotations

import argparse
import collections
import pickle
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from lizaalert_tagger.vision.model import LizaAlertTagger
from lizaalert_tagger.common.spec import DEFAULT_SPEC_PATH, AttributeSpec, Preprocessing, load_spec

# The seed's head names -> our attribute keys.
SEED_HEADS = {
    "timeday": "time_of_day",
    "timeyear": "season",
    "place": "terrain",
    "sherp": "sherp",
    "auto": "car",
    "avia": "aviation",
    "bpla": "drone",
    "horses": "horses",
    "cynologist": "dog_handler",
    "diver": "diver",
    "hugs": "hugs",
}
# The module attribute names the seed's heads may have, by output key: the original
# code stored two heads under other names than the keys its forward pass returns.
SEED_HEAD_ATTRIBUTES = {
    "timeday": ("timeOfTheDay", "timeday"),
    "timeyear": ("timeOfTheYear", "timeyear"),
}
# model_wo_fc = Sequential(*list(resnet.children())[:-1]): index -> torchvision name
WO_FC_NAMES = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}

# What the restricted unpickler may construct: tensors and containers, nothing that runs code.
_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("builtins", "set"): set,
    ("builtins", "object"): object,
}
for _name in ("FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage", "ByteStorage", "BoolStorage"):
    _ALLOWED[("torch", _name)] = getattr(torch, _name)


class InertObject:
    """Stands in for any class the pickle names: keeps the saved state, runs nothing."""

    _qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    @property
    def state(self) -> dict:
        state = self.__dict__.get("_state")
        if isinstance(state, tuple):  # (dict, slots) form
            state = state[0]
        return state or {}


def _inert_class(module: str, name: str) -> type:
    return type(name, (InertObject,), {"_qualname": f"{module}.{name}"})


def _reconstruct(cls: type, base: type, state: Any) -> Any:
    """copyreg._reconstructor, restricted to inert classes."""
    if not (isinstance(cls, type) and issubclass(cls, InertObject)):
        raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}")
    return cls()


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if (module, name) == ("copyreg", "_reconstructor"):
            return _reconstruct
        if module.startswith("torch") and name.startswith("_rebuild"):
            raise pickle.UnpicklingError(f"unsupported tensor constructor {module}.{name}")
        return _inert_class(module, name)


# torch.load accepts a pickle module; this one only knows the restricted unpickler.
restricted_pickle = SimpleNamespace(Unpickler=RestrictedUnpickler, load=lambda f, **kw: RestrictedUnpickler(f, **kw).load(), __name__="restricted_pickle")


def read_seed_checkpoint(path: str | Path) -> InertObject:
    """The pickled seed module as an inert tree, without running any code from the file."""
    try:
        root = torch.load(path, map_location="cpu", weights_only=False, pickle_module=restricted_pickle)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: not a seed checkpoint we can read safely: {e}") from None
    except Exception as e:
        raise ValueError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    if not isinstance(root, InertObject):
        raise ValueError(f"{path}: expected a pickled model (torch.save(model)), got {type(root).__name__}")
    return root


def module_tensors(node: InertObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten an inert nn.Module tree to a state dict (parameters and persistent buffers)."""
    state = node.state
    out: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for name, tensor in (state.get(group) or {}).items():
            if tensor is not None:
                out[prefix + name] = tensor.detach().clone() if isinstance(tensor, torch.Tensor) else tensor
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, InertObject):
            out.update(module_tensors(child, f"{prefix}{name}."))
    return out


def seed_head_modules(modules: dict[str, Any]) -> dict[str, InertObject]:
    """``{output key: head module}``, each head found under any of its spellings (SEED_HEAD_ATTRIBUTES)."""
    heads, missing = {}, []
    for seed_name in SEED_HEADS:
        spellings = SEED_HEAD_ATTRIBUTES.get(seed_name, (seed_name,))
        found = [name for name in spellings if isinstance(modules.get(name), InertObject)]
        if not found:
            missing.append(" or ".join(spellings) if len(spellings) > 1 else seed_name)
        elif len(found) > 1:
            raise ValueError(f"seed head {seed_name!r} is there twice, as {' and '.join(found)}: which one the forward pass used is unknown")
        else:
            heads[seed_name] = modules[found[0]]
    if missing:
        raise ValueError(f"seed heads missing: {missing}; found modules {sorted(modules)}")
    return heads


def convert(root: InertObject, spec: AttributeSpec) -> tuple[dict[str, torch.Tensor], AttributeSpec]:
    """Our state dict and spec from the seed's inert module tree."""
    modules = root.state.get("_modules") or {}
    if "resnet" in modules:
        trunk = {k: v for k, v in module_tensors(modules["resnet"]).items() if not k.startswith("fc.")}
    elif "model_wo_fc" in modules:
        trunk = {}
        for k, v in module_tensors(modules["model_wo_fc"]).items():
            index, rest = k.split(".", 1)
            if index in WO_FC_NAMES:
                trunk[f"{WO_FC_NAMES[index]}.{rest}"] = v
    else:
        raise ValueError(f"no trunk: expected a 'resnet' or 'model_wo_fc' submodule, found {sorted(modules)}")
    heads = seed_head_modules(modules)

    state = {f"trunk.{k}": v for k, v in trunk.items()}
    for seed_name, key in SEED_HEADS.items():
        a = spec[key]
        head = module_tensors(heads[seed_name])
        linear = [k[: -len("weight")] for k in head if k.endswith("weight")]
        if len(linear) != 1:
            raise ValueError(f"head {seed_name}: expected one Linear layer, found weights {sorted(head)}")
        weight, bias = head[linear[0] + "weight"], head[linear[0] + "bias"]
        outputs = weight.shape[0]
        if a.is_binary:
            if outputs == 2:
                weight, bias = (weight[1] - weight[0])[None], (bias[1] - bias[0])[None]
            elif outputs != 1:
                raise ValueError(f"head {seed_name} ({key}): a binary head has 1 or 2 outputs, this one has {outputs}")
        elif outputs != a.width:
            raise ValueError(f"head {seed_name} ({key}): expected {a.width} outputs, found {outputs}")
        state[f"heads.{key}.1.weight"] = weight.contiguous()
        state[f"heads.{key}.1.bias"] = bias.contiguous()
    seed_spec = spec.with_thresholds({a.key: 0.5 for a in spec.attributes if a.is_binary}).with_preprocessing(
        Preprocessing(size=(256, 256), resize="squash", interpolation="bilinear", mean=None, std=None)
    )
    model = LizaAlertTagger(seed_spec)
    model.load_state_dict(state, strict=True)  # proves the layout is complete
    return state, seed_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="the seed's .pth (a pickled whole model)")
    parser.add_argument("--out", type=Path, required=True, help="output directory: weights.pt and attributes.json")
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC_PATH, help="our attribute spec (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        state, spec = convert(read_seed_checkpoint(args.checkpoint), load_spec(args.spec))
    except (ValueError, RuntimeError) as e:
        print(f"lizaalert-import-seed: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out / "weights.pt")
    spec.save(args.out / "attributes.json")
    print(f"wrote {args.out / 'weights.pt'} and {args.out / 'attributes.json'} (seed preprocessing: no mean/std)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
