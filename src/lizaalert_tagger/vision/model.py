"""The tagger network: a ResNet34 trunk and one small head per attribute, and its weights' loading.

The archive has no TorchServe ``--model-file``: the worker builds :class:`LizaAlertTagger`
from the attribute spec the archive carries and loads the state dict given to
``--serialized-file`` into it (:func:`load_tagger`). The output width and head layout
come from the spec; nothing here knows about serving.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet34

from lizaalert_tagger.common.spec import DEFAULT_SPEC_PATH, AttributeSpec, load_spec

FEATURE_DIM = 512


class LizaAlertTagger(nn.Module):
    """ResNet34 trunk (everything but ``fc``) + ``Dropout(0.2) -> Linear`` per attribute.

    ``forward`` returns one logits tensor ``[batch, spec.num_logits]`` laid out by the
    spec's slices, so that the decoder needs nothing but the spec.
    """

    def __init__(self, spec: AttributeSpec | str | Path | None = None) -> None:
        super().__init__()
        if not isinstance(spec, AttributeSpec):
            spec = load_spec(spec or DEFAULT_SPEC_PATH)
        self.spec = spec
        trunk = resnet34(weights=None)
        trunk.fc = nn.Identity()
        self.trunk = trunk
        # Heads in logit order so that concatenation gives the spec's layout.
        ordered = sorted(spec.attributes, key=lambda a: a.logits[0])
        self.head_order = [a.key for a in ordered]
        self.heads = nn.ModuleDict(
            {a.key: nn.Sequential(nn.Dropout(0.2), nn.Linear(FEATURE_DIM, a.width)) for a in ordered}
        )

    @property
    def num_logits(self) -> int:
        return self.spec.num_logits

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` normalised images -> ``[B, 512]`` pooled features."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"Expected a [batch, 3, H, W] tensor. Got {tuple(images.shape)}.")
        return self.trunk(images)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, 512]`` features -> ``[B, num_logits]`` logits in the spec's layout."""
        return torch.cat([self.heads[key](features) for key in self.head_order], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))


def load_state(weights_path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` (any float precision, returned as fp32) or a ``torch.save`` file.

    Neither path runs code: safetensors holds tensors only, and ``torch.load`` runs
    with ``weights_only=True``, so a file holding pickled code (a whole pickled
    module, or anything crafted) is refused instead of executed.
    """
    weights_path = Path(weights_path)
    if weights_path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(weights_path))
        except (OSError, SafetensorError) as e:
            raise ValueError(f"{weights_path}: not a readable safetensors file ({e})") from None
        return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # UnpicklingError for code, RuntimeError for non-torch files
        raise ValueError(
            f"{weights_path}: refused to load. Expected a plain state dict (tensors only, "
            f"torch.save(model.state_dict())); got something that needs code to unpickle or is not a "
            f"torch file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{weights_path}: expected a state dict of tensors, got {type(state).__name__}")
    return state


def load_tagger(weights_path: str | Path, spec: AttributeSpec | str | Path | None = None) -> LizaAlertTagger:
    """Build the model from the spec and load its weights (:func:`load_state`: no code is run)."""
    model = LizaAlertTagger(spec)
    state = load_state(weights_path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{weights_path}: weights do not match the spec's model: "
            f"missing {sorted(missing)[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {sorted(unexpected)[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    return model.eval()
