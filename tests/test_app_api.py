"""The app through its API (gradio_client), and jobs that outlive the app.

Start the app, load the demo images and launch a training through the API; kill the app
hard while the training runs; the training keeps running; a new app on the same folder
shows it as running (same process) and can stop it, which leaves a checkpoint.
"""

from __future__ import annotations


import pytest

from medart.jobs import is_alive
from helpers import wait_for
from medart.run_folder import RunFolder

pytestmark = pytest.mark.slow  # an app process and a training that outlives it


def test_api_training_survives_an_app_restart(app_server, tmp_path):
    client_mod = pytest.importorskip("gradio_client")
    server = app_server()
    client = client_mod.Client(server.url, verbose=False)

    status = client.predict(api_name="/status")
    assert status["base_model"] == "tiny" and status["offline_demo"] is True and status["jobs"] == []

    summary = client.predict(api_name="/load_demo")[0]
    assert "Imported 16 image(s)" in summary

    # a reviewer approves every caption (here straight in the workspace)
    from medart.workspace import Workspace

    with Workspace(server.home / "workspace") as ws:
        for item in ws.query(limit=None):
            ws.set_text(item.id, f"A {item.label} image of {item.label}, mostly red and orange.", approve=True)

    # the Train form, in order: name, base, HLDF mode, N, M, CFG, rank, T5 LoRA, HLDF, lr, steps, epochs,
    # resolution, checkpoint every, samples every, validation prompts, 8-bit Adam, buckets, caption dropout, tracker
    form = ["api-run", "tiny", "balanced", 500, 20, 4.5, 8, True, True, 1e-4, 100000, 15, 0, 100000, 100000, "",
            False, False, 0.0, "none"]
    blocked = client.predict(*(["bad name/"] + form[1:10] + [0, 0] + form[12:]), api_name="/preflight")
    assert "Set the number of steps or epochs" in blocked
    result, *_ = client.predict(*form, api_name="/launch_training")
    assert "Launched" in result

    run = RunFolder(server.home / "runs" / "api-run")
    wait_for(lambda: len(run.metrics()) >= 3)
    job = client.predict(api_name="/status")["jobs"][0]
    assert job["kind"] == "train" and job["state"] == "running"

    server.kill()  # the app dies; the training must not
    first_count = len(run.metrics())
    wait_for(lambda: len(run.metrics()) > first_count + 2)
    assert is_alive(job["pid"])

    again = app_server(server.home)
    client = client_mod.Client(again.url, verbose=False)
    shown = client.predict(api_name="/status")["jobs"][0]
    assert (shown["id"], shown["state"], shown["pid"]) == (job["id"], "running", job["pid"])

    client.predict("api-run", api_name="/stop_training")
    final = wait_for(lambda: (s := client.predict(api_name="/status")["jobs"][0])["state"] in ("stopped", "failed") and s)
    assert final["state"] == "stopped"
    step = run.read_status()["step"]
    assert (run.path / "checkpoints" / f"step-{step:06d}").is_dir() and step > first_count
