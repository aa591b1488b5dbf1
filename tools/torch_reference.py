"""DS-FlexiNet in plain PyTorch eager mode: the reference a user would otherwise pick.

The same layers, widths, parameters and MACs as `asc_keras.ds_flexinet` (NCHW layout, as
PyTorch code is written), for speed comparisons in tools/bench_train.py and
tools/bench_inference.py. Not part of the package.
"""

import torch
from torch import nn

from asc_keras.models.ds_flexinet import resolve_variant


class ResidualNorm(nn.Module):
    def __init__(self, epsilon=1e-5):
        super().__init__()
        self.epsilon = epsilon
        self.residual_lambda = nn.Parameter(torch.tensor(0.1))

    def forward(self, x):
        mean = x.mean(dim=(2, 3), keepdim=True)
        variance = x.var(dim=(2, 3), keepdim=True, unbiased=False)
        return self.residual_lambda * x + (x - mean) * torch.rsqrt(variance + self.epsilon)


class Block(nn.Module):
    def __init__(self, cin, cout, expansion, stride):
        super().__init__()
        hidden = cin * expansion
        self.residual = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        shortcut = []
        if stride != 1:
            shortcut.append(nn.AvgPool2d(stride, ceil_mode=True))
        if stride != 1 or cin != cout:
            shortcut += [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x):
        return self.residual(x) + self.shortcut(x)


def stage_norm(norm, channels):
    return {"residual": ResidualNorm, "batch": lambda: nn.BatchNorm2d(channels)}.get(
        norm, nn.Identity
    )()


def ds_flexinet_torch(variant="sm2", num_classes=10, norm="residual"):
    config = resolve_variant(variant)
    layers, cin = [], 1
    for cout in config.stem:
        layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        cin = cout
    layers.append(stage_norm(norm, cin))
    for stage in config.stages:
        for block in range(stage.blocks):
            layers.append(
                Block(cin, stage.filters, config.expansion, stage.strides if block == 0 else 1)
            )
            cin = stage.filters
        layers.append(stage_norm(norm, cin))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)
