"""The one upload to the Hugging Face Hub, and the folder it uploads.

`share(build, repo_id, repo_type, ...)`: `build(folder)` fills a folder (atomically, under
`out` or a temporary one); a dry run stops there, otherwise the repository is created if
absent (`HfApi.create_repo(exist_ok=True, private=...)`; an existing one keeps its visibility,
and a public one is refused when private was asked for), and made exactly the folder's contents by one `HfApi.upload_folder`
commit (files of an earlier push that the folder no longer has are deleted, so an image
removed from the workspace does not stay online). The token comes from huggingface_hub's
usual places (`HF_TOKEN`, `hf auth login`), is passed to the hub client only, and never
appears in a message.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from medart.fileio import atomic_dir

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


@dataclass
class ShareResult:
    """What a push did: the folder it built (gone after a real push without `out`), its files
    (paths relative to the repository root), their size, and the repository's URL (None for a dry run)."""

    repo_id: str
    repo_type: str
    private: bool
    dry_run: bool
    folder: Path | None
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    url: str | None = None

    def describe(self) -> str:
        what = f"{len(self.files)} file(s), {self.bytes / 2**20:.1f} MB"
        if self.dry_run:
            return (f"dry run: {what} written to {self.folder}, exactly what would be uploaded to {self.repo_type} "
                    f"{self.repo_id} ({'private' if self.private else 'public'}); nothing was sent")
        return f"pushed {what} to {self.url} ({'private' if self.private else 'public'})"


def login_help() -> str:
    """How to give the hub a token, for error messages and the app."""
    return ("log in once with `hf auth login` (a token with write access from "
            "https://huggingface.co/settings/tokens), or set the HF_TOKEN environment variable")


def hub_token() -> str | None:
    """The token huggingface_hub would use (HF_TOKEN, then the stored login); None without one."""
    from huggingface_hub import get_token

    return get_token()


def check_repo_id(repo_id: str) -> str:
    repo_id = (repo_id or "").strip()
    if not REPO_ID.match(repo_id) or ".." in repo_id or repo_id.endswith((".", ".git")):
        raise ValueError(f"{repo_id!r} is not a repository id: write it as OWNER/NAME (your user or organisation name, "
                         "a slash, then letters, digits, '-', '_' or '.')")
    return repo_id


def folder_files(folder: Path) -> list[str]:
    """Every file under `folder`, as sorted paths relative to it."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def share(build: Callable[[Path], None], repo_id: str, repo_type: str, private: bool = True, dry_run: bool = False,
          out: str | Path | None = None, overwrite: bool = False, token: str | None = None,
          progress: Callable[[str], None] | None = None) -> ShareResult:
    """Build the folder with `build`, then upload it (see the module docstring). `out`: where the
    folder goes (required for a dry run; otherwise a temporary folder, removed after the upload)."""
    repo_id = check_repo_id(repo_id)
    if dry_run and not out:
        raise ValueError("a dry run writes the folder it would upload: say where with --out DIR")
    if not dry_run:
        token = token or hub_token()
        if not token:
            raise ValueError(f"pushing to the Hugging Face Hub needs a token: {login_help()}. "
                             "To see what would be uploaded without one, use --dry-run --out DIR")
    say = progress or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="medart-share-") as scratch:
        folder = Path(out).expanduser() if out else Path(scratch) / "upload"
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{folder} is a file; choose a folder for --out")
        if folder.exists() and any(folder.iterdir()) and not overwrite:
            raise ValueError(f"{folder} exists and is not empty; choose a new --out folder or pass --overwrite")
        say("writing the folder to upload")
        with atomic_dir(folder, prefix=f".tmp-{folder.name}-") as tmp:
            build(tmp)
        files = folder_files(folder)
        result = ShareResult(repo_id, repo_type, private, dry_run, folder, files,
                             sum((folder / f).stat().st_size for f in files))
        if dry_run:
            return result
        say(f"uploading {len(files)} file(s), {result.bytes / 2**20:.1f} MB, to {repo_id}")
        result.url, result.private = upload(folder, repo_id, repo_type, private, token)
        if not out:
            result.folder = None
        return result


def upload(folder: Path, repo_id: str, repo_type: str, private: bool, token: str) -> tuple[str, bool]:
    """Create the repository if absent and make its files exactly `folder`'s, in one commit; its
    URL and whether it is private (an existing repository keeps its visibility; a public one is
    refused when private was asked for)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, HTTPError, OfflineModeIsEnabled

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        is_private = bool(api.repo_info(repo_id, repo_type=repo_type).private)
        if private and not is_private:
            raise ValueError(f"{repo_id} already exists on the hub and is public, and a private push was asked "
                             "for: nothing was uploaded. Choose a new name, or make that repository private first")
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, delete_patterns="*",
                          commit_message="Upload from Med-Art Studio")
    except OfflineModeIsEnabled:
        raise ValueError("the hub is switched off here (HF_HUB_OFFLINE is set): unset it to push, or try it with "
                         "--dry-run --out DIR") from None
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        advice = (f"check that the token may write to {repo_id} ({login_help()})" if status in (401, 403)
                  else "check the repository name, then try again")
        said = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"the hub refused the push ({said}): {advice}") from None
    except (HTTPError, OSError) as e:
        raise ValueError(f"could not reach the Hugging Face Hub ({type(e).__name__}); check the connection and try "
                         "again, or try it with --dry-run --out DIR") from None
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]
    return f"https://huggingface.co/{prefix}{repo_id}", is_private
