"""Background jobs: detached processes, FIFO queue, stop with checkpoint, resume, reconcile."""

import json
import os
import signal
import time
from pathlib import Path

import pytest

from medart.config import load_config, save_config
from medart.jobs import JobManager, RunComplete, hint, is_alive, log_tail
from helpers import wait_for
from medart.run_folder import RunFolder
from medart.workspace import Workspace

DEMO = Path(__file__).resolve().parent.parent / "assets" / "demo"


@pytest.fixture
def manager(tmp_path, medart_cache):
    m = JobManager(tmp_path / "jobs", slots_=1, stop_timeout=60, env={"MEDART_JOB_SLOTS": "1"})
    yield m
    for job in m.list():  # never leave a process behind
        if job.state in ("running", "stopping") and is_alive(job.pid, job.proc_start):
            os.killpg(job.pid, signal.SIGKILL)


def train_config(run, steps) -> Path:
    """A training's config file, as launching writes one: the run's config.yaml."""
    config = load_config(None, base_model="tiny", data=str(DEMO), output=str(run), max_steps=steps,
                         checkpoint_every=100000, validation_every=100000, **{"hldf.every": 100000})
    save_config(config, run / "config.yaml")
    return run / "config.yaml"


def caption_config(tmp_path, **options) -> dict:
    """A captioning job's options: an empty workspace, so it has nothing to caption and ends at once."""
    Workspace(tmp_path / "ws").close()
    return {"workspace": str(tmp_path / "ws"), "base_model": "tiny", **options}


@pytest.mark.slow  # job processes, a training
def test_queue_runs_jobs_one_at_a_time_in_order(manager, tmp_path):
    first = manager.submit("caption", caption_config(tmp_path), title="first")
    second = manager.submit("caption", caption_config(tmp_path), title="second")
    assert first.state == "running" and second.state == "queued"  # one slot: the second waits
    done_first = manager.wait(first.id)
    done_second = manager.wait(second.id)
    assert done_first.state == "done" and done_second.state == "done"
    assert done_second.started >= done_first.ended  # FIFO: it started after the first ended
    assert "nothing to caption" in done_first.log_path.read_text()  # the command's own output is in the log
    assert done_first.argv == ["caption", "--config", str(done_first.path / "config.yaml")]
    bad = manager.wait(manager.submit("caption", caption_config(tmp_path, no_such_option=1)).id)
    assert bad.state == "failed" and bad.exit_code == 2 and "unknown option(s) no_such_option" in bad.log_tail


def test_killed_job_process_shows_as_failed_with_log_tail(manager, tmp_path):
    run = tmp_path / "run"
    job = manager.submit("train", train_config(run, 100000), title="doomed", output=str(run))
    wait_for(lambda: "started" in job.log_path.read_text())
    assert is_alive(job.pid, job.proc_start)
    os.kill(job.pid, signal.SIGKILL)
    wait_for(lambda: not is_alive(job.pid, job.proc_start))
    jobs = manager.tick()
    dead = next(j for j in jobs if j.id == job.id)
    assert dead.state == "failed"
    assert "ended without reporting" in dead.error and "started" in dead.log_tail
    assert manager.tick()[0].state == "failed"  # stays failed, never running again


@pytest.mark.slow  # job processes, a training
def test_stop_writes_checkpoint_and_resume_continues_from_it(manager, tmp_path):
    run = tmp_path / "run"
    job = manager.submit("train", train_config(run, 80), title="stoppable", output=str(run))
    folder = RunFolder(run)
    wait_for(lambda: len(folder.metrics()) >= 5)
    manager.stop(job.id)
    stopped = manager.wait(job.id)
    assert stopped.state == "stopped"
    status = folder.read_status()
    assert status["state"] == "stopped"
    step = status["step"]
    assert 5 <= step < 80
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("step-*"))
    assert checkpoints == [f"step-{step:06d}"]  # written by the stop, not by the interval
    assert not (run / "adapter").exists()

    resumed = manager.resume(job.id)
    assert resumed.resumes == job.id and resumed.argv == ["train", str(run / "config.yaml"), "--resume", "latest"]
    finished = manager.wait(resumed.id)
    assert finished.state == "done", finished.log_tail
    rows = [r for r in folder.metrics() if "loss" in r]  # step rows (the validation at step 0 has none)
    assert [r["step"] for r in rows] == list(range(1, 81))  # continued from the checkpoint, no gap, no repeat
    assert folder.read_status()["state"] == "done" and (run / "adapter" / "dit").is_dir()
    assert f"resumed from {run / 'checkpoints' / f'step-{step:06d}'} at step {step}" in (run / "log.txt").read_text()
    before = len(manager.list())
    with pytest.raises(RunComplete, match="is complete: it trained all 80 steps"):
        manager.resume(finished.id)  # a finished run: said so, nothing queued
    assert len(manager.list()) == before


def test_reconcile_kills_a_job_that_ignores_stop(tmp_path):
    manager = JobManager(tmp_path / "jobs", slots_=1, stop_timeout=0.5, env={"MEDART_JOB_SLOTS": "1"})
    job = manager.submit("caption", caption_config(tmp_path), start=False)  # its record is all this needs
    # pretend it is stuck in 'stopping' with a live process of its own group
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                             "print('ready', flush=True); time.sleep(60)"],
                            start_new_session=True, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"  # it ignores SIGTERM from here on
    from medart.jobs import process_start_time

    manager._update(job.id, state="running", pid=proc.pid, proc_start=process_start_time(proc.pid), ended=None)
    assert manager.stop(job.id).state == "stopping"
    time.sleep(0.6)  # past the (tiny) deadline
    manager.tick()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    proc.stdout.close()
    job = manager.get(job.id)
    assert job.state == "stopped" and "killed" in job.note


def test_log_tail_keeps_last_progress_state(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("a\nstep 1/10\rstep 2/10\rstep 3/10\nlast line\n")
    assert log_tail(log, lines=2) == "step 3/10\nlast line"
    assert json.loads(json.dumps(log_tail(tmp_path / "missing.txt"))) == ""


def test_errors_come_with_a_hint():
    assert "lower the resolution" in hint("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB")
    assert "8-bit Adam" in hint("RuntimeError: CUDA out of memory")
    assert "learning rate" in hint("FloatingPointError: loss became nan at step 12")
    assert hint("KeyError: 'x'") is None


@pytest.mark.slow  # runs a caption job in a subprocess
def test_jobs_command_lists_and_stops(tmp_path, capsys):
    import argparse

    from medart.cli import jobs as cli_jobs

    parser = argparse.ArgumentParser()
    cli_jobs.add_parsers(parser.add_subparsers(dest="command"))
    manager = JobManager(tmp_path / "jobs", slots_=1)
    queued = manager.submit("caption", caption_config(tmp_path), start=False)
    args = parser.parse_args(["jobs", "--home", str(tmp_path)])
    # listing starts nothing it should not: the queued job starts (one free slot) and is listed
    assert cli_jobs.cmd_jobs(args) == 0
    assert queued.id in capsys.readouterr().out
    manager.wait(queued.id)
    args = parser.parse_args(["jobs", "stop", queued.id, "--home", str(tmp_path)])
    cli_jobs.cmd_jobs(args)
    assert f"{queued.id}: done" in capsys.readouterr().out  # a finished job stays finished
    with pytest.raises(ValueError, match="only training jobs"):
        cli_jobs.cmd_jobs(parser.parse_args(["jobs", "resume", queued.id, "--home", str(tmp_path)]))
