"""Shared test setup: offline, one CPU thread, and the tiny base model built once per session."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spin-waiting here or in subprocesses

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


@pytest.fixture
def app_server(tmp_path, medart_cache):
    """Start `python app.py` on a free port: `app_server(home=None)` -> a running AppServer;
    every server started is killed at the end, with the jobs it left running."""
    from apphelpers import AppServer

    servers = []

    def make(home=None):
        server = AppServer(home or tmp_path / "home", medart_cache)
        servers.append(server)
        return server.start()

    yield make
    for s in servers:
        s.kill()
        s.stop_jobs()


@pytest.fixture(scope="session")
def blip_dir(tmp_path_factory):
    """A tiny random BLIP saved as a transformers model folder (the `transformers` caption backend)."""
    from helpers import build_tiny_blip

    return build_tiny_blip(tmp_path_factory.mktemp("blip"))


@pytest.fixture
def server():
    """A local OpenAI-compatible caption server (helpers.ChatHandler); its /v1 URL."""
    from helpers import chat_server

    with chat_server() as url:
        yield url



def pytest_collection_modifyitems(items):
    """Hand the longest files to the parallel workers first (the browser walks, then the files
    with the most slow tests), so that no long file starts when the others are done; a file's
    own tests keep their order."""
    weight = {}
    for item in items:
        browser, slow = weight.get(item.path, (item.path.parent.name != "e2e", 0))
        weight[item.path] = (browser, slow - bool(item.get_closest_marker("slow")))
    rank = {path: n for n, path in enumerate(sorted(weight, key=weight.get))}
    items.sort(key=lambda item: rank[item.path])
