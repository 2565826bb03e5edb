"""A small convolutional network for the README's PyTorch examples (objective.name = "torch",
objective.model = "jobs.models.convnet:convnet", run from the repository's root).

Each row of the data is one flattened square grey image of side sqrt(n_features) (16 x 16 for
n_features = 256); two 3x3 convolutions with GroupNorm (not BatchNorm: mpitrain averages
parameters only, see docs/torch.md), a 2x2 pooling, then a linear layer to the C classes.
"""
import math

import torch


class ConvNet(torch.nn.Module):
    def __init__(self, side: int, n_classes: int, channels: int = 8):
        super().__init__()
        self.side = side
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, channels, 3, padding=1), torch.nn.GroupNorm(2, channels), torch.nn.ReLU(),
            torch.nn.Conv2d(channels, channels, 3, padding=1), torch.nn.GroupNorm(2, channels), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        )
        self.classify = torch.nn.Linear(channels * (side // 2) ** 2, n_classes)

    def forward(self, rows):  # rows: (b, side * side), one flattened image each
        images = rows.view(-1, 1, self.side, self.side)
        return self.classify(self.features(images).flatten(1))


def convnet(n_features: int, n_classes: int):
    side = math.isqrt(n_features)
    if side * side != n_features:
        raise ValueError(f"convnet takes square images: n_features = {n_features} is not a square")
    return ConvNet(side, n_classes), torch.nn.CrossEntropyLoss()
