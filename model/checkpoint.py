"""Self-describing checkpoints; the only module that reads or writes them.

Our format (``torch.save`` of plain containers, read back with ``weights_only=True``)::

    {"format": "nowcast-predrnn/1",
     "config": PredRNNConfig as a dict,
     "state_dict": the uncompiled module's weights (the authors' key names),
     "meta": {"code_version", "iteration", "scaling", "weights_sha256", "created", ...},
     "train_state": optional run state for --resume (optimizer, sampler, RNG states)}

The authors' ``run.py`` writes ``{"net_param": state_dict}`` and nothing else; such a file loads
given their hyperparameters (:func:`config_from_official_flags`). Since our keys are theirs,
conversion is lossless both ways (:func:`to_official`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import torch

from model.io.atomic import atomic_path
from model.io.units import DEFAULT_SCALING
from model.network.predrnn import PredRNN, PredRNNConfig

FORMAT = "nowcast-predrnn/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the model it should build."""


def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        base = version("nowcast")
    except PackageNotFoundError:
        base = "0+unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{base}+g{commit}" if commit else base
    except (OSError, subprocess.SubprocessError):
        return base


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """Digest of names, dtypes, shapes and bytes of every tensor, in sorted key order."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # reshape(-1): a channels_last 1x1 kernel counts as contiguous yet keeps a stride != 1.
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_checkpoint(
    path: str | Path,
    model: PredRNN,
    *,
    iteration: int = 0,
    scaling: dict[str, Any] | None = None,
    extra_meta: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write atomically (temp file + rename) and return the metadata written."""
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {
        "code_version": code_version(),
        "iteration": int(iteration),
        "scaling": dict(scaling if scaling is not None else DEFAULT_SCALING),
        "weights_sha256": weights_sha256(state_dict),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "num_parameters": model.num_parameters(),
    }
    meta.update(extra_meta or {})
    payload: dict[str, Any] = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "state_dict": state_dict,
        "meta": meta,
    }
    if train_state is not None:
        payload["train_state"] = train_state
    # The mode a plain open() would give, so that a worker running as another user (the non-root
    # user of the images) can read what the trainer wrote.
    umask = os.umask(0)
    os.umask(umask)
    with atomic_path(path, mode=0o666 & ~umask, fsync=False) as tmp:
        torch.save(payload, tmp)
    return meta


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw payload, with ``weights_only=True`` (no arbitrary code runs on load)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict, found {type(payload).__name__}")
    return payload


def _build(config: PredRNNConfig, state_dict: dict[str, torch.Tensor], source: str) -> PredRNN:
    model = PredRNN(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = [k for k in expected if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            problems.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        if wrong:
            k = wrong[0]
            problems.append(
                f"shape of {k} is {tuple(state_dict[k].shape)}, the hyperparameters give {tuple(expected[k].shape)}"
            )
        raise CheckpointError(f"{source}: weights do not fit the hyperparameters: {'; '.join(problems)}")
    model.load_state_dict(state_dict)
    return model.eval()


def load_checkpoint(path: str | Path) -> tuple[PredRNN, dict[str, Any]]:
    """Rebuild the model from one of our checkpoints alone; returns (model in eval mode, meta)."""
    payload = read_checkpoint(path)
    if payload.get("format") != FORMAT:
        hint = " (an authors' checkpoint: load it with load_official)" if "net_param" in payload else ""
        raise CheckpointError(f"{path}: format is {payload.get('format')!r}, expected {FORMAT!r}{hint}")
    try:
        config = PredRNNConfig.from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad config ({exc})") from exc
    model = _build(config, payload["state_dict"], str(path))
    meta = dict(payload.get("meta", {}))
    actual = weights_sha256(model.state_dict())
    if meta.get("weights_sha256") not in (None, actual):
        raise CheckpointError(f"{path}: weights sha256 {actual} does not match the recorded {meta['weights_sha256']}")
    meta["weights_sha256"] = actual
    return model, meta


def config_from_official_flags(
    model_name: str,
    num_hidden: str | list[int],
    filter_size: int = 5,
    patch_size: int = 4,
    img_channel: int = 1,
    layer_norm: int = 0,
    img_width: int = 64,
    input_length: int = 10,
    total_length: int = 20,
    decouple_beta: float = 0.1,
    stride: int = 1,
) -> PredRNNConfig:
    """A config from the names and values of the authors' ``run.py`` flags."""
    versions = {"predrnn": "v1", "predrnn_v2": "v2"}
    if model_name not in versions:
        raise ValueError(f"model_name must be one of {sorted(versions)}, not {model_name!r}")
    widths = [int(n) for n in num_hidden.split(",")] if isinstance(num_hidden, str) else list(num_hidden)
    return PredRNNConfig(
        version=versions[model_name],
        num_hidden=widths,
        filter_size=filter_size,
        stride=stride,
        patch_size=patch_size,
        channels=img_channel,
        layer_norm=bool(layer_norm),
        height=img_width,
        width=img_width,
        input_length=input_length,
        output_length=total_length - input_length,
        decouple_beta=decouple_beta,
    )


def load_official(path: str | Path, config: PredRNNConfig) -> PredRNN:
    """Load the authors' ``{'net_param': state_dict}`` file given their hyperparameters."""
    payload = read_checkpoint(path)
    if "net_param" not in payload:
        raise CheckpointError(f"{path}: no 'net_param' entry; not a checkpoint written by the authors' run.py")
    return _build(config, payload["net_param"], str(path))


def to_official(model: PredRNN) -> dict[str, Any]:
    """The authors' layout, ready for ``torch.save``: our keys are theirs."""
    return {"net_param": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
