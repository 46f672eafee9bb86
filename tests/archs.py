"""Small stand-ins for modern architectures, shaped like timm's and torchvision's.

They are tiny (8x8 one-channel inputs) so that tests fit them in seconds, and
they need neither torchvision nor timm.
"""

from collections import OrderedDict

import torch
from torch import nn


class PatchEmbed(nn.Module):
    def __init__(self, dim, patch=4, channels=1):
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Block(nn.Module):
    """A pre-norm transformer block."""

    def __init__(self, dim, heads=2):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """timm's layout: patch_embed, cls_token and pos_embed at the root, blocks, norm, head."""

    def __init__(self, dim=16, depth=3, n_classes=10, image_size=8, patch=4):
        super().__init__()
        n_patches = (image_size // patch) ** 2
        self.patch_embed = PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, n_patches + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


class Encoder(nn.Module):
    """torchvision's ViT encoder: its own pos_embedding, a block container, a final norm."""

    def __init__(self, dim, depth, n_tokens):
        super().__init__()
        self.pos_embedding = nn.Parameter(0.02 * torch.randn(1, n_tokens, dim))
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", Block(dim)) for i in range(depth)))
        self.ln = nn.LayerNorm(dim)

    def forward(self, x):
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class TorchvisionViT(nn.Module):
    def __init__(self, dim=16, depth=2, n_classes=10, image_size=8, patch=4):
        super().__init__()
        self.conv_proj = nn.Conv2d(1, dim, patch, stride=patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder = Encoder(dim, depth, (image_size // patch) ** 2 + 1)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(dim, n_classes)))

    def forward(self, x):
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(len(x), -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


def mobilenet_like(n_classes=10):
    """torchvision's MobileNet layout: features (a Sequential of blocks), pool, classifier."""
    def block(cin, cout, stride):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout),
                             nn.Hardswish())

    class MobileNetLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(block(1, 8, 1), block(8, 16, 2), block(16, 16, 1),
                                          block(16, 32, 2))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Linear(32, 24), nn.Hardswish(), nn.Dropout(0.2),
                                            nn.Linear(24, n_classes))

        def forward(self, x):
            return self.classifier(self.avgpool(self.features(x)).flatten(1))

    return MobileNetLike()


class BasicBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class ResNetLike(nn.Module):
    """torchvision's ResNet layout: conv1, bn1, relu, layer1, layer2, avgpool, fc."""

    def __init__(self, n_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(BasicBlock(8), BasicBlock(8))
        self.layer2 = nn.Sequential(BasicBlock(8), BasicBlock(8))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, n_classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(self.avgpool(x).flatten(1))


class TupleOutput(nn.Module):
    """Returns (logits, features), as some detection or distillation nets do."""

    def __init__(self, n_classes=10):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.head = nn.Linear(32, n_classes)

    def forward(self, x):
        features = self.body(x)
        return self.head(features), features
