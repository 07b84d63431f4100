"""Nested training state (optimizer and scheduler `state_dict()`s) as safetensors + JSON, no pickle.

`save_state(obj, tensors_path, json_path)` splits a structure of dicts, lists, tuples, strings,
numbers, booleans, None and tensors in two: every tensor goes into one safetensors file under
a key naming its place, everything else into a JSON document where each tensor is replaced by
`{"$tensor": key}`. `load_state` puts them back together, tensors bit for bit and floats exactly
(JSON keeps a float's shortest round-trip form). Tuples and dicts whose keys are not all strings
(an optimizer's state is keyed by parameter index) are tagged so they come back as they were.

Neither file can carry code: loading reads JSON and raw tensor bytes only. Anything else in the
structure (an arbitrary object) is refused when saving instead of being pickled.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from medart.fileio import atomic_write_text

TENSOR, TUPLE, PAIRS, FLOAT = "$tensor", "$tuple", "$pairs", "$float"


class StateFileError(ValueError):
    """A state file is missing, malformed or holds something other than data."""


def _encode(obj, where: str, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, torch.Tensor):
        key = where or "tensor"
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {TENSOR: key}
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        # JSON has no inf/nan; tag them rather than write non-standard JSON
        return obj if math.isfinite(obj) else {FLOAT: repr(obj)}
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, f"{where}.{k}" if where else str(k), tensors) for k, v in enumerate(obj)]
        return {TUPLE: items} if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        plain = all(isinstance(k, str) and not k.startswith("$") for k in obj)
        if plain:
            return {k: _encode(v, f"{where}.{k}" if where else k, tensors) for k, v in obj.items()}
        for k in obj:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"cannot store a state key of type {type(k).__name__} at {where or 'the top'}")
        return {PAIRS: [[k, _encode(v, f"{where}.{k}" if where else str(k), tensors)] for k, v in obj.items()]}
    raise TypeError(
        f"cannot store a {type(obj).__name__} at {where or 'the top'} of the training state without pickle; "
        "only tensors, numbers, strings, booleans, None, lists, tuples and dicts are stored"
    )


def _decode(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (tag, value), = obj.items()
        if tag == TENSOR:
            if value not in tensors:
                raise StateFileError(f"the state names a tensor {value!r} that its tensor file does not hold")
            return tensors[value]
        if tag == TUPLE:
            return tuple(_decode(v, tensors) for v in value)
        if tag == PAIRS:
            return {k: _decode(v, tensors) for k, v in value}
        if tag == FLOAT:
            return float(value)
    return {k: _decode(v, tensors) for k, v in obj.items()}


def save_state(obj, tensors_path: Path, json_path: Path) -> None:
    """Write `obj` as a safetensors file plus a JSON file (see the module docstring)."""
    tensors: dict[str, torch.Tensor] = {}
    doc = _encode(obj, "", tensors)
    save_file(tensors, str(tensors_path))
    atomic_write_text(json_path, json.dumps(doc, indent=1, allow_nan=False) + "\n")


def load_state(tensors_path: Path, json_path: Path):
    """The structure written by `save_state`; StateFileError when a file is missing or malformed."""
    try:
        doc = json.loads(Path(json_path).read_text(encoding="utf-8"))
        tensors = load_file(str(tensors_path))
        return _decode(doc, tensors)
    except StateFileError:
        raise
    except FileNotFoundError as e:
        raise StateFileError(f"missing {Path(e.filename).name}") from None
    except (SafetensorError, OSError) as e:
        raise StateFileError(f"{Path(tensors_path).name} is not a readable safetensors file ({e})") from None
    except (ValueError, TypeError, AttributeError) as e:
        raise StateFileError(f"{Path(json_path).name} is not a valid state document ({e})") from None
