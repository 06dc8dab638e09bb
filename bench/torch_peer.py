#!/usr/bin/python3
"""The PyTorch side of fvc-bench-train: the same model, data path and steps, as users write them.

Usage: torch_peer.py MODE FOLDER THREADS BATCH WARMUP STEPS

MODE is train-fp32, train-bf16-cl, infer-fp32 or infer-bf16-cl. FOLDER holds what the parent
wrote: images.u8 (uint8, N x 48 x 48), labels.i64 (int64, N) and weights.f32 (float32, every
parameter in the model's order: conv1_1 weight and bias, ..., fc8 weight and bias).

Prints `parameters`, `forward_macs` (per image, counted from the layer shapes), `loss` (the
first batch's cross-entropy, before any update) and `seconds` (each timed step after the
warm-up ones); the parent reads this process's peak memory itself.

Training uses torch.optim.Adam; fvc uses Keras 2's variant, which puts epsilon outside the
bias correction and costs the same. The first batch's loss comes before any update, so the
two variants do not change it.
"""
import sys
import time
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

SIDE = 48
BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))  # convolutions and filters per block
HIDDEN = 512
CLASSES = 7


class EmotionNet(nn.Module):
    """VGG16's convolutions (conv1_1 .. conv5_3, 3x3, ReLU, 2x2 max-pools), fc6, fc7, fc8."""

    def __init__(self):
        super().__init__()
        layers = OrderedDict()
        channels = 3
        for block, (convolutions, filters) in enumerate(BLOCKS, 1):
            for layer in range(1, convolutions + 1):
                layers[f"conv{block}_{layer}"] = nn.Conv2d(channels, filters, 3, padding=1)
                layers[f"relu{block}_{layer}"] = nn.ReLU(inplace=True)
                channels = filters
            layers[f"pool{block}"] = nn.MaxPool2d(2, 2)
        self.backbone = nn.Sequential(layers)
        features = channels * (SIDE >> len(BLOCKS)) ** 2
        self.fc6 = nn.Linear(features, HIDDEN)
        self.fc7 = nn.Linear(HIDDEN, HIDDEN)
        self.fc8 = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x):
        x = torch.flatten(self.backbone(x), 1)
        x = F.relu(self.fc6(x), inplace=True)
        x = F.relu(self.fc7(x), inplace=True)
        return self.fc8(x)

    def forward_macs(self):
        """Multiply-adds of one image's forward pass, from the layer shapes."""
        side, macs = SIDE, 0
        for module in self.backbone:
            if isinstance(module, nn.Conv2d):
                macs += side * side * module.weight.numel()
            elif isinstance(module, nn.MaxPool2d):
                side //= 2
        return macs + sum(fc.weight.numel() for fc in (self.fc6, self.fc7, self.fc8))


def read(path, dtype):
    with open(path, "rb") as file:
        return torch.frombuffer(bytearray(file.read()), dtype=dtype)


def load_weights(model, path):
    flat = read(path, torch.float32)
    offset = 0
    with torch.no_grad():
        for parameter in model.parameters():
            n = parameter.numel()
            parameter.copy_(flat[offset:offset + n].view_as(parameter))
            offset += n
    if offset != flat.numel():
        raise SystemExit(f"torch_peer: {path} has {flat.numel()} values, expected {offset}")


def batch(images, labels, first, size):
    """Rows first..first+size as the model takes them: gathered, / 255, three channels."""
    index = torch.arange(first, first + size)
    pixels = images.index_select(0, index).float()
    x = pixels.unsqueeze(1).expand(-1, 3, -1, -1).div(255)
    return x, labels.index_select(0, index)


def main():
    mode, folder = sys.argv[1], sys.argv[2]
    threads, size, warmup, steps = (int(value) for value in sys.argv[3:7])
    torch.set_num_threads(threads)
    train = mode.startswith("train-")
    fast = mode.endswith("-bf16-cl")
    if mode not in ("train-fp32", "train-bf16-cl", "infer-fp32", "infer-bf16-cl"):
        raise SystemExit(f"torch_peer: unknown mode {mode}")

    model = EmotionNet()
    load_weights(model, f"{folder}/weights.f32")
    images = read(f"{folder}/images.u8", torch.uint8).view(-1, SIDE, SIDE)
    labels = read(f"{folder}/labels.i64", torch.int64)
    memory_format = torch.channels_last if fast else torch.contiguous_format
    if fast:
        model = model.to(memory_format=torch.channels_last)
    print(f"parameters {sum(p.numel() for p in model.parameters())}")
    print(f"forward_macs {model.forward_macs()}")

    def logits_of(x):
        x = x.contiguous(memory_format=memory_format)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            return model(x).float()

    seconds = []
    if train:
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        for step in range(warmup + steps):
            start = time.perf_counter()
            x, y = batch(images, labels, step * size, size)
            logits = logits_of(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            # What fvc's trainer keeps per batch: the loss and the correct count.
            loss_value = loss.item()
            logits.detach().argmax(1).eq(y).sum().item()
            seconds.append(time.perf_counter() - start)
            if step == 0:
                print(f"loss {loss_value:.6f}")
    else:
        model.eval()
        with torch.no_grad():
            for step in range(warmup + steps):
                start = time.perf_counter()
                x, y = batch(images, labels, 0, size)
                logits = logits_of(x)
                loss = F.cross_entropy(logits, y, reduction="sum").item() / size
                torch.softmax(logits, 1)
                logits.argmax(1)
                seconds.append(time.perf_counter() - start)
                if step == 0:
                    print(f"loss {loss:.6f}")
    print("seconds " + " ".join(f"{s:.6f}" for s in seconds[warmup:]))


if __name__ == "__main__":
    main()
