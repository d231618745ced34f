"""The compact super-resolution network trained here and shipped as ONNX.

A plain stack of 3x3 convolutions with PReLU on the low-resolution grid, a sub-pixel (depth-to-space)
output, no biases (so the network is scale-equivariant), and a fixed bicubic skip: the network predicts the residual over dasksr's own bicubic
upscaling. The skip is a 5x5 convolution whose ``scale**2`` filters are the bicubic polyphase weights
(`dasksr.kernels.interp.phase_weights`), so the exported graph computes ``bicubic + residual`` in one
pass, with no padding: every convolution is "valid" and the halo is the number of 3x3 layers.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from dasksr.kernels.interp import phase_weights


def bicubic_filters(scale: int) -> np.ndarray:
    """The ``(scale**2, 1, 5, 5)`` filters of dasksr's bicubic as a convolution before depth-to-space."""
    w = phase_weights("bicubic", scale)  # (scale, 5): phase p over taps -2..2
    out = np.einsum("py,qx->pqyx", w, w).reshape(scale * scale, 1, 5, 5)
    return out.astype(np.float32)


class CompactSR(nn.Module):
    """``layers`` 3x3 convolutions of ``channels`` features; ``padding`` 1 to train, 0 to export."""

    def __init__(self, scale: int, channels: int = 32, layers: int = 10, padding: int = 1):
        super().__init__()
        if layers < 3:
            raise ValueError("layers must be >= 3")
        self.scale, self.channels, self.layers, self.padding = scale, channels, layers, padding

        # No biases: with PReLU the network is positively homogeneous, f(a x) = a f(x) for a > 0,
        # so it needs no normalisation of the data's scale (uint8, uint16 reflectance or floats).
        def conv(cin: int, cout: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, 3, padding=padding, bias=False)

        convs: list[nn.Module] = [conv(1, channels), nn.PReLU(channels)]
        for _ in range(layers - 2):
            convs += [conv(channels, channels), nn.PReLU(channels)]
        convs.append(conv(channels, scale * scale))
        self.body = nn.Sequential(*convs)
        self.register_buffer("skip", torch.from_numpy(bicubic_filters(scale)))
        self.shuffle = nn.PixelShuffle(scale)

    @property
    def halo(self) -> int:
        return max(self.layers, 2)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The learned part on the fine grid (training adds the precomputed bicubic to it)."""
        return self.shuffle(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Valid mode (padding 0): ``(N, 1, h + 2 halo, w + 2 halo)`` in, ``(N, 1, h s, w s)`` out."""
        r = self.body(x)
        c = self.halo - 2
        inner = x[..., c : x.shape[-2] - c, c : x.shape[-1] - c] if c else x
        d = self.halo - self.layers
        if d:
            r = r[..., d : r.shape[-2] - d, d : r.shape[-1] - d]
        return self.shuffle(r + nn.functional.conv2d(inner, self.skip))

    def macs_per_pixel(self) -> int:
        """Multiply-adds per low-resolution pixel (the bicubic skip included)."""
        c, s = self.channels, self.scale
        return 9 * c + 9 * c * c * (self.layers - 2) + 9 * c * s * s + 25 * s * s

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.state_dict().items() if k != "skip"}

    def load_arrays(self, arrays: dict[str, np.ndarray], strict: bool = True) -> None:
        own = self.state_dict()
        for k, v in arrays.items():
            if k in own and own[k].shape == v.shape:
                own[k].copy_(torch.from_numpy(np.asarray(v)))
            elif strict:
                raise KeyError(f"checkpoint tensor {k} {v.shape} does not fit the model")


def deepen(
    arrays: dict[str, np.ndarray], layers: int, new_layers: int, prefix: str = ""
) -> dict[str, np.ndarray]:
    """Checkpoint tensors of a ``layers``-deep network as a ``new_layers``-deep one computing the same.

    Each inserted hidden layer is an identity 3x3 convolution followed by a PReLU of slope 1, placed
    at evenly spaced depths among the hidden layers (net2net deepening). In valid mode it only trims
    one more pixel from each side, so the deeper network gives the same output for one more pixel
    of context per layer. Tensors under prefixes (``w/``, ``m/``, ``v/`` of a training checkpoint)
    are renamed alike; the new layers' weights get ``prefix`` and no optimiser moments.
    """
    extra = new_layers - layers
    if extra < 0:
        raise ValueError(f"cannot deepen {layers} layers to {new_layers}")
    hidden = layers - 1  # convolutions followed by a PReLU
    # After which old hidden layers the identities go: evenly spread, the last before the output.
    after = [hidden - 1 - (i * hidden) // extra for i in range(extra)][::-1] if extra else []
    where = {}  # old layer index -> new layer index
    new = 0
    inserted = []
    for old in range(layers):
        where[old] = new
        new += 1
        while after and old == after[0]:
            inserted.append(new)
            after.pop(0)
            new += 1
    out: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        m = re.fullmatch(r"(.*body\.)(\d+)\.weight", key)
        if not m:
            out[key] = value
            continue
        index = int(m.group(2))
        layer, is_prelu = index // 2, index % 2
        out[f"{m.group(1)}{2 * where[layer] + is_prelu}.weight"] = value
    channels = arrays[f"{prefix}body.0.weight"].shape[0]
    identity = np.zeros((channels, channels, 3, 3), np.float32)
    identity[np.arange(channels), np.arange(channels), 1, 1] = 1
    for layer in inserted:
        out[f"{prefix}body.{2 * layer}.weight"] = identity.copy()
        out[f"{prefix}body.{2 * layer + 1}.weight"] = np.ones(channels, np.float32)
    return out


def export_onnx(model: CompactSR, path: str) -> None:
    """Write ``model`` in valid mode as ONNX with dynamic batch and spatial axes."""
    valid = CompactSR(model.scale, model.channels, model.layers, padding=0)
    valid.load_arrays(model.state_arrays())
    valid.eval()
    n = 2 * valid.halo + 8
    dummy = torch.zeros(1, 1, n, n)
    torch.onnx.export(
        valid,
        (dummy,),
        path,
        input_names=["lr"],
        output_names=["sr"],
        dynamic_axes={"lr": {0: "n", 2: "h", 3: "w"}, "sr": {0: "n", 2: "H", 3: "W"}},
        opset_version=17,
        dynamo=False,
    )
