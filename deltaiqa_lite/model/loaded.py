"""One model made ready to run: its file, card, preprocessing and onnxruntime session.

The scorer and the explainer both start from a :class:`LoadedModel`, so the way
a model name becomes a running session is written once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deltaiqa_lite.model.card import read_card
from deltaiqa_lite.model.preprocess import Preprocessing
from deltaiqa_lite.model.session import SessionInfo, create_session, resolve_model


@dataclass
class LoadedModel:
    """A resolved model file with its card and a session made once."""

    model_path: Path
    card: dict
    preprocessing: Preprocessing
    class_labels: list[str]
    precision: str
    model_name: str
    session: Any
    session_info: SessionInfo


def load_model(model: str | os.PathLike, *, provider: str = "auto", threads: int | None = None,
               batch_size: int = 8, strict_provider: bool = False,
               cache_dir: str | os.PathLike | None = None, spinning: bool | None = None) -> LoadedModel:
    """Resolve ``model`` ("int8", "fp32" or a path), read its card and make its session."""
    model_path = resolve_model(model)
    card = read_card(model_path)
    preprocessing = Preprocessing.from_card(card["preprocessing"])
    precision = str(card.get("precision", "unknown"))
    session, session_info = create_session(
        model_path, provider=provider, threads=threads, precision=precision,
        batch_size=batch_size, input_size=preprocessing.input_size,
        strict_provider=strict_provider, cache_dir=cache_dir, spinning=spinning)
    return LoadedModel(model_path=model_path, card=card, preprocessing=preprocessing,
                       class_labels=list(card["class_labels"]), precision=precision,
                       model_name=f"{card.get('name', model_path.stem)}-{precision}",
                       session=session, session_info=session_info)
