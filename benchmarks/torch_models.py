"""PyTorch reference training steps for the jaxdl-vs-PyTorch CPU benchmark.

The same six models as jaxdl's Flax models (an MLP and a CNN for 28x28 digits, a CIFAR
ResNet-18 and ViT-S/4, a small GPT and an LSTM language model), in float32, each with its optimizer and one
fixed random batch, so the caller can time a full training step (forward, loss, backward,
optimizer step, zero_grad) in PyTorch eager mode or with the forward + loss under
`torch.compile` (the optimizer step stays eager, as most users run it).

torch is a benchmark-only extra: nothing in the `jaxdl` package imports this module.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MODELS: tuple[str, ...] = ("mlp", "cnn", "resnet18", "vit", "gpt", "lstm")
VOCAB = 256


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _ResNet18(nn.Module):
    """CIFAR ResNet-18 in the kuangliu/pytorch-cifar layout (3x3 stem, no max-pool)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        )
        blocks, cin = [], 64
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [_BasicBlock(cin, width, stride), _BasicBlock(width, width, 1)]
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem(x))
        return self.head(x.mean(dim=(2, 3)))


class _Block(nn.Module):
    """Pre-LN transformer block: self-attention (causal for the GPT), then a GELU MLP."""

    def __init__(self, width: int, heads: int, causal: bool = True) -> None:
        super().__init__()
        self.heads, self.causal = heads, causal
        self.ln1 = nn.LayerNorm(width, eps=1e-6)
        self.q, self.k, self.v = (nn.Linear(width, width) for _ in range(3))
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width, eps=1e-6)
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)

    def _split(self, t: Tensor) -> Tensor:
        b, n, c = t.shape
        return t.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.ln1(x)
        q, k, v = self._split(self.q(h)), self._split(self.k(h)), self._split(self.v(h))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        x = x + self.proj(a.transpose(1, 2).reshape(x.shape))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class _GPT(nn.Module):
    def __init__(self, width: int = 256, depth: int = 6, heads: int = 8, seq: int = 128) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, width)
        self.pos = nn.Parameter(torch.randn(seq, width) * 0.02)
        self.blocks = nn.Sequential(*(_Block(width, heads) for _ in range(depth)))
        self.ln_f = nn.LayerNorm(width, eps=1e-6)
        self.head = nn.Linear(width, VOCAB)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.tok(tokens) + self.pos[: tokens.shape[1]]
        return self.head(self.ln_f(self.blocks(x)))


class _ViT(nn.Module):
    """ViT-S/4 for 32x32 images: 4x4 patches, a class token, learned positions, pre-LN blocks."""

    def __init__(self, width: int = 384, depth: int = 12, heads: int = 6, patch: int = 4) -> None:
        super().__init__()
        self.patches = nn.Conv2d(3, width, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, (32 // patch) ** 2 + 1, width) * 0.02)
        self.blocks = nn.Sequential(*(_Block(width, heads, causal=False) for _ in range(depth)))
        self.ln_f = nn.LayerNorm(width, eps=1e-6)
        self.head = nn.Linear(width, 10)

    def forward(self, images: Tensor) -> Tensor:
        x = self.patches(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.ln_f(self.blocks(x))[:, 0])


class _LSTM(nn.Module):
    def __init__(self, embed: int = 128, hidden: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=1, batch_first=True)
        self.head = nn.Linear(hidden, VOCAB)

    def forward(self, tokens: Tensor) -> Tensor:
        out, _ = self.lstm(self.embed(tokens))
        return self.head(out)


def _mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 512),
        nn.ReLU(),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Linear(512, 10),
    )


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 12 * 12, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def _model(name: str) -> nn.Module:
    builders: dict[str, Callable[[], nn.Module]] = {
        "mlp": _mlp,
        "cnn": _cnn,
        "resnet18": _ResNet18,
        "vit": _ViT,
        "gpt": _GPT,
        "lstm": _LSTM,
    }
    if name not in builders:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    return builders[name]()


def _optimizer(name: str, params) -> torch.optim.Optimizer:
    if name == "resnet18":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    if name == "gpt":
        return torch.optim.AdamW(params, lr=3e-4, weight_decay=0.1)
    if name == "vit":
        return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    return torch.optim.Adam(params, lr=1e-3)


def _batch(name: str) -> tuple[Tensor, Tensor]:
    """One random batch (inputs, integer targets) in the model's input layout."""
    if name == "mlp":
        return torch.rand(256, 1, 28, 28), torch.randint(0, 10, (256,))
    if name == "cnn":
        return torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
    if name in ("resnet18", "vit"):
        return torch.rand(64, 3, 32, 32), torch.randint(0, 10, (64,))
    batch, seq = (32, 128) if name == "gpt" else (32, 64)
    return torch.randint(0, VOCAB, (batch, seq)), torch.randint(0, VOCAB, (batch, seq))


def parameter_count(name: str) -> int:
    """Number of trainable parameters of model `name` (BatchNorm running stats excluded)."""
    return sum(p.numel() for p in _model(name).parameters() if p.requires_grad)


def make_step(
    name: str, *, compiled: bool, threads: int, seed: int = 0
) -> tuple[Callable[[], None], int]:
    """Build model `name`, its optimizer and one fixed random batch; return (train_step,
    batch_size). `train_step()` runs one training step in place and returns nothing.

    With `compiled`, the forward pass + loss is wrapped in `torch.compile` (default mode);
    backward and the optimizer step run eagerly. The first call of a compiled step compiles.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = _model(name).train()
    optimizer = _optimizer(name, model.parameters())
    x, y = _batch(name)

    def loss_fn(inputs: Tensor, targets: Tensor) -> Tensor:
        logits = model(inputs)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    loss = torch.compile(loss_fn) if compiled else loss_fn

    def train_step() -> None:
        loss(x, y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return train_step, x.shape[0]


def analytic_note() -> str:
    """A line for the report on how the PyTorch side is set up."""
    return (
        f"PyTorch {torch.__version__}, float32, {torch.get_num_threads()} threads; "
        "torch.compile (default mode) wraps forward + loss, optimizer step eager."
    )
