"""Shared test setup: offline, one CPU thread, and the tiny base model built once per session."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def medart_cache(tmp_path_factory):
    """A private cache so tests build the tiny base through the production path."""
    path = os.environ.get("MEDART_TEST_CACHE") or str(tmp_path_factory.mktemp("medart-cache"))
    os.environ["MEDART_CACHE"] = path
    return path


@pytest.fixture(scope="session")
def tiny_dir(medart_cache):
    from medart.profiles import resolve

    return resolve("tiny")[0]
