"""Med-Art Studio: `python app.py` serves the app on http://127.0.0.1:7860.

Options: --host, --port, --base-model (else MEDART_BASE_MODEL, else PixArt-α on a GPU and the
tiny demo model on a CPU), --home (runs and jobs; else MEDART_HOME, else /data/medart on a Space
with persistent storage, else the current folder), --workspace (images and captions; else
MEDART_WORKSPACE, else <home>/workspace: the same one `python -m medart` opens, and the status
line says which and why), --import-root FOLDER (repeatable:
the server folders the app's users may import from or name; default: the home folder and the
working directory on loopback, none otherwise). MEDART_AUTH=user:password turns on a login;
it is required when binding to anything but localhost. Jobs started from the app keep running
when it stops; on start it re-attaches to them.

`python app.py --reader-study NAME` serves one reader study's reader page and nothing else,
for readers on other machines (same --host, --port, --home and MEDART_AUTH).

Gradio serves no folder of this machine: pages get pixels and values, whose copies Gradio keeps
in a private cache folder of this process, removed when the app stops: on Ctrl-C, and on
SIGTERM or SIGHUP (systemd, docker, `kill`, a closed terminal) the same way.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import sys
import tempfile

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Med-Art Studio")
    p.add_argument("--host", default=os.environ.get("MEDART_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("MEDART_PORT", os.environ.get("GRADIO_SERVER_PORT", 7860))))
    p.add_argument("--base-model", help="profile (pixart-alpha-512, tiny), local folder or hub id")
    p.add_argument("--home", help="folder for runs and jobs (and the workspace, unless --workspace or "
                                  "MEDART_WORKSPACE names one)")
    p.add_argument("--workspace", help="the workspace folder (default: $MEDART_WORKSPACE, else <home>/workspace), "
                                       "as for `python -m medart`")
    p.add_argument("--import-root", action="append", default=[], metavar="FOLDER",
                   help="a server folder the app's users may import from or name (repeatable; default: the home "
                        "folder and the working directory when bound to loopback, none otherwise)")
    p.add_argument("--reader-study", metavar="NAME",
                   help="serve only this reader study's reader page (for readers), nothing else")
    return p.parse_args(argv)


def auth_from_env(host: str):
    """(user, password) from MEDART_AUTH; an error when binding beyond localhost without it."""
    value = os.environ.get("MEDART_AUTH", "")
    if value:
        user, sep, password = value.partition(":")
        if not sep or not user or not password:
            raise SystemExit("error: MEDART_AUTH must look like user:password")
        return (user, password)
    if host not in LOCAL_HOSTS and not os.environ.get("SPACE_ID"):
        raise SystemExit(f"error: binding to {host} exposes the app to the network; set MEDART_AUTH=user:password "
                         "to require a login (or bind to 127.0.0.1)")
    return None


OWNER_FILE = ".owner-pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def remove_stale_page_caches(parent: str) -> int:
    """Remove the cache folders (with their uploads) that killed apps of this user left in
    `parent`: those whose recorded process is gone. A folder without a record, another user's,
    or a running app's is kept. Returns how many went."""
    gone = 0
    for entry in os.scandir(parent):
        try:
            if (not entry.name.startswith("medart-pages-") or not entry.is_dir(follow_symlinks=False)
                    or entry.stat(follow_symlinks=False).st_uid != os.getuid()):
                continue
            with open(os.path.join(entry.path, OWNER_FILE)) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(entry.path, ignore_errors=True)
            gone += 1
    return gone


def private_page_cache() -> str:
    """Gradio's upload and cache folder, private to this process and removed at exit: it holds
    only what pages were given (and uploads), never a file of the home folder."""
    if os.environ.get("GRADIO_TEMP_DIR"):
        return os.environ["GRADIO_TEMP_DIR"]
    remove_stale_page_caches(tempfile.gettempdir())
    folder = tempfile.mkdtemp(prefix="medart-pages-")
    with open(os.path.join(folder, OWNER_FILE), "w") as f:
        f.write(str(os.getpid()))
    os.environ["GRADIO_TEMP_DIR"] = folder
    os.environ["GRADIO_EXAMPLES_CACHE"] = os.path.join(folder, "examples")
    atexit.register(shutil.rmtree, folder, True)
    return folder


def stop_on_termination() -> None:
    """SIGTERM and SIGHUP stop the app as Ctrl-C does (Gradio closes its server, the exit
    handlers remove the private cache folder with its uploads); by default they would end the
    process on the spot and leave that folder behind."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) == signal.SIG_DFL:  # `nohup` ignores SIGHUP: keep that
            signal.signal(number, interrupt)


def serve_reader_study(args, auth) -> int:
    """The reader server: one study's reader page, no model, no other tab, no file by path."""
    from pathlib import Path

    from medart.places import default_home, workspace_folder
    from medart.ui.login import launch_options
    from medart.ui.reader_page import CSS, StudyWorkspace, build_reader_app, launch_kwargs

    home = Path(args.home) if args.home else default_home()
    site = StudyWorkspace(workspace_folder(args.workspace, home)[0].resolve())
    try:
        demo = build_reader_app(site, args.reader_study)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from e
    print(f"Med-Art Studio reader server: study {args.reader_study!r} only", flush=True)
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=args.host, server_port=args.port, show_error=True, css=CSS, footer_links=[],
                run_history=False, **launch_kwargs(demo, launch_options(auth)))
    return 0


def log_to_console() -> None:
    """One line per event of the app's own loggers (a refused action, a resumed run) on stderr."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    medart = logging.getLogger("medart")
    medart.addHandler(handler)
    medart.setLevel(logging.INFO)
    medart.propagate = False


def main(argv=None) -> int:
    args = parse_args(argv)
    log_to_console()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # images and usage stay on this machine
    if os.environ.get("SPACE_ID") and args.host in LOCAL_HOSTS:
        args.host = "0.0.0.0"  # a Space serves from its container; its own login protects it
    auth = auth_from_env(args.host)
    private_page_cache()
    stop_on_termination()
    if auth:
        from medart.places import default_home
        from medart.ui.login import remember_devices_in

        remember_devices_in(args.home or default_home())  # browsers that logged in stay known after a restart
    if args.reader_study:
        return serve_reader_study(args, auth)
    if os.path.isdir("/data") and os.access("/data", os.W_OK) and "HF_HOME" not in os.environ:
        os.environ["HF_HOME"] = "/data/.huggingface"  # Spaces' persistent storage keeps downloaded weights
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(1)  # steadier on small CPUs (OpenMP spin-waiting)
    from medart.studio import Studio
    from medart.ui import build_app, launch_kwargs
    from medart.ui.login import launch_options

    studio = Studio.create(home=args.home, base_model=args.base_model, host=args.host,
                           import_roots=args.import_root, workspace=args.workspace)
    jobs = studio.jobs.tick()  # reconcile jobs whose process died; re-attach to the running ones
    running = [j.id for j in jobs if j.state in ("running", "stopping")]
    print(f"Med-Art Studio: {studio.status_line()}" + (f"; running jobs: {', '.join(running)}" if running else ""),
          flush=True)
    demo = build_app(studio)
    demo.queue(default_concurrency_limit=1)
    options, login = launch_kwargs(studio), launch_options(auth)
    middleware = options["app_kwargs"]["middleware"] + login.pop("app_kwargs", {}).get("middleware", [])
    options["app_kwargs"] = {**options["app_kwargs"], "middleware": middleware}
    demo.launch(server_name=args.host, server_port=args.port, show_error=False,  # only messages meant for people
                **options, **login)
    return 0


if __name__ == "__main__":
    sys.exit(main())
