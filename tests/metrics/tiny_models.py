"""Tiny real models built in code and saved in the on-disk formats the metrics load (no downloads).

- CLIP: a 2-layer ``CLIPModel`` (32x32 images, 16-d projection) with a character-level ``CLIPTokenizer``
  (vocab.json + empty merges.txt written here) and a ``CLIPImageProcessor`` (resize/crop 32).
- LAION aesthetic MLP: the real layer layout (``layers.{0,2,4,6,7}`` linear, dropouts between) with
  small widths, saved with ``torch.save(state_dict)``.
- DINO: a 2-layer ``ViTModel`` with a ``ViTImageProcessor`` (32x32).
"""

from __future__ import annotations

import json
from pathlib import Path

CHARS = "abcdefghijklmnopqrstuvwxyz"
EMB = 16  # CLIP projection size of the tiny model


def _quiet() -> None:
    import transformers

    transformers.logging.set_verbosity_error()


def make_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """Save a tiny CLIP (model, tokenizer, image processor) into ``folder``."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    from ipvgkit.metrics.clip import _image_processor_class

    _quiet()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for c in CHARS:
        vocab[c] = len(vocab)
    for c in CHARS:
        vocab[c + "</w>"] = len(vocab)
    for t in ("<|startoftext|>", "<|endoftext|>"):
        vocab[t] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=EMB,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            projection_dim=EMB,
        ),
        projection_dim=EMB,
    )
    CLIPModel(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    _image_processor_class()(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    return folder


def make_tiny_aesthetic(path: Path, dim: int = EMB, seed: int = 0) -> Path:
    """Save an MLP with the LAION predictor's layer layout (input ``dim``) as a state dict."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layers = nn.Sequential(
        nn.Linear(dim, 24),
        nn.Dropout(0.2),
        nn.Linear(24, 12),
        nn.Dropout(0.2),
        nn.Linear(12, 8),
        nn.Dropout(0.1),
        nn.Linear(8, 4),
        nn.Linear(4, 1),
    )
    module = nn.Module()
    module.layers = layers
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), path)
    return path


def make_tiny_dino(folder: Path, seed: int = 0) -> Path:
    """Save a tiny ``ViTModel`` + image processor into ``folder``."""
    import torch
    import transformers
    from transformers import ViTConfig, ViTModel

    _quiet()
    folder = Path(folder)
    torch.manual_seed(seed)
    cfg = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
    )
    ViTModel(cfg, add_pooling_layer=False).eval().save_pretrained(folder)
    proc = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
    proc(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def make_models_dir(root: Path) -> Path:
    """A models dir with every non-face metric's files (tiny): CLIP B/32 and L/14, the MLP, DINO."""
    root = Path(root)
    make_tiny_clip(root / "clip-vit-base-patch32", seed=0)
    make_tiny_clip(root / "clip-vit-large-patch14", seed=1)
    make_tiny_aesthetic(root / "sac+logos+ava1-l14-linearMSE.pth")
    make_tiny_dino(root / "dino-vitb16")
    return root
