"""The `reader-study` command: `python -m medart reader-study create|invite|readers|revoke|close|list|results|export`.

    create      k held-out real images of a workspace split and k generated from a run with the
                same captions (fixed seeds), identically encoded, stored in the workspace;
                `--owner-code` asks for the owner code that the app wants before it shows results
    list        the studies of a workspace with their readers and progress
    results     accuracy vs 50 % with a Wilson 95 % interval, sensitivity/specificity for
                "generated", per-class accuracy, realism, Cohen's kappa; optional plot and JSON
    close       close a study: no more answers; its answers can then be exported
    export      every answer as CSV, with the truth of each image (a closed study only)
    invite      add a reader under a label of the owner's choosing; prints their invitation link
    readers     each reader's label, progress and link (or "revoked")
    revoke      revoke a reader's link (their answers stay)
    owner-code  set a study's owner code (`--replace`: replace one that was forgotten)

Readers answer on the reader server, `python app.py --reader-study NAME`, which serves that
study's reader page and nothing else (`medart.ui.reader_page`), each through their own link.
Nothing here prints a study's seed or secret: a reader who knew them could work out the
answers. The owner code is read from $MEDART_OWNER_CODE when set (for scripts), else asked
for twice without echo; it never goes on the command line,
where shell histories and process lists would keep it. `results`, `export` and `owner-code
--replace` need no code: whoever runs them has the workspace database, which the code does
not protect (it keeps whoever uses the owner's app from seeing answers, see
`medart.reader_study`). Registered by `medart.cli` through `add_parsers(sub)`; errors are
ValueError/FileNotFoundError with what to do.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import sys
from pathlib import Path

from medart.fileio import slugify
from medart.workspace import Workspace, default_workspace


OWNER_CODE_ENV = "MEDART_OWNER_CODE"


def _open(args) -> Workspace:
    return Workspace(args.workspace, create=False)


def read_owner_code() -> str:
    """The owner code from $MEDART_OWNER_CODE, else typed twice at the terminal (not echoed)."""
    from medart.reader_study import check_owner_code

    if os.environ.get(OWNER_CODE_ENV):
        return check_owner_code(os.environ[OWNER_CODE_ENV])
    if not sys.stdin.isatty():
        raise ValueError(f"no terminal to ask for the owner code; set {OWNER_CODE_ENV}")
    code = check_owner_code(getpass.getpass("Owner code (the app asks for it before showing results): "))
    if getpass.getpass("The same owner code again: ").strip() != code:
        raise ValueError("the two owner codes differ; nothing was changed")
    return code


def cmd_create(args) -> int:
    from medart.cli.evaluate import _Bars
    from medart.reader_study.sets import create_study

    code = read_owner_code() if args.owner_code else None
    with _open(args) as ws, _Bars() as bars:
        study = create_study(ws, args.name, args.run, k=args.k, split=args.split, seed=args.seed,
                             base_model=args.base_model, steps=args.steps, cfg=args.cfg, size=args.size,
                             display_size=args.display_size, batch_size=args.batch_size, progress=bars,
                             owner_code=code)
    print(f"study {study.name!r}: {study.n_real} real + {study.n_generated} generated images, "
          f"{study.display_size} px; readers answer on `python app.py --reader-study {shlex.quote(study.name)}`, "
          f"each through their own link (`reader-study invite --name {shlex.quote(study.name)} --label LABEL`)")
    if not study.has_owner_code:
        print("no owner code: the app shows no results of this study until its owner sets one "
              "(`reader-study owner-code`, or Set owner code in the app)")
    return 0


def cmd_invite(args) -> int:
    from medart.reader_study import ReaderStudies
    from medart.reader_study import reader_link

    with _open(args) as ws:
        reader = ReaderStudies(ws).invite(args.name, args.label)
    print(f"{reader.name}: {reader_link(args.url, reader.invitation)}")
    print("give this link to that reader only: whoever has it answers as them (`reader-study revoke` ends it)")
    return 0


def cmd_readers(args) -> int:
    from medart.reader_study import ReaderStudies
    from medart.reader_study import reader_link

    with _open(args) as ws:
        readers = ReaderStudies(ws).readers(args.name)
    if not readers:
        print(f"no readers yet; add one with `python -m medart reader-study invite --name {shlex.quote(args.name)} "
              "--label LABEL`")
    for r in readers:
        link = "revoked" if r.revoked else reader_link(args.url, r.invitation) if r.invitation else "not invited"
        print(f"{r.name}\t{r.answered}/{len(r.order)}\t{link}")
    return 0


def cmd_revoke(args) -> int:
    from medart.reader_study import ReaderStudies

    with _open(args) as ws:
        reader = ReaderStudies(ws).revoke(args.name, args.label)
    print(f"revoked the link of {reader.name!r} ({reader.answered}/{len(reader.order)} answered, kept)")
    return 0


def cmd_close(args) -> int:
    from medart.reader_study import ReaderStudies

    with _open(args) as ws:
        study = ReaderStudies(ws).close(args.name)
    print(f"closed study {study.name!r}: its readers answer no more; `reader-study export` writes the answers")
    return 0


def cmd_owner_code(args) -> int:
    from medart.reader_study import ReaderStudies

    with _open(args) as ws:
        store = ReaderStudies(ws)
        study = store.study(args.name)  # an unknown name fails before the code is asked for
        study = store.set_owner_code(study, read_owner_code(), replace=args.replace)
    print(f"owner code of study {study.name!r} set; the app shows its results to whoever types it")
    return 0


def cmd_list(args) -> int:
    from medart.reader_study import ReaderStudies

    with _open(args) as ws:
        store = ReaderStudies(ws)
        studies = store.studies()
        if not studies:
            print("no reader studies yet; create one with `python -m medart reader-study create`")
        for s in studies:
            readers = ", ".join(f"{r.name} {r.answered}/{len(r.order)}" for r in store.readers(s)) or "no readers"
            code = "owner code set" if s.has_owner_code else "no owner code"
            state = "closed" if s.closed else "open"
            print(f"{s.name}\t{s.n_real} real + {s.n_generated} generated\trun {s.run or '-'}\t{state}\t{code}\t"
                  f"{readers}")
    return 0


def cmd_results(args) -> int:
    from medart.reader_study import report as reader_report
    from medart.reader_study.stats import summarise
    from medart.reader_study import ReaderStudies

    with _open(args) as ws:
        store = ReaderStudies(ws)
        study = store.study(args.name)
        results = summarise(store.answers(study))
    title = f"Reader study {study.name}: {study.n_real} real + {study.n_generated} generated"
    if args.json:
        print(json.dumps(results.as_dict(), indent=2))
    else:
        print(reader_report.markdown(results, title))
    if args.plot:
        print(f"plot: {reader_report.write_plot(results, args.plot, title)}", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    from medart.reader_study import ReaderStudies

    with _open(args) as ws:
        store = ReaderStudies(ws)
        slug = slugify(store.study(args.name).name) or "study"
        out = args.out or f"reader-study-{slug}.csv"
        path = store.export_csv(args.name, Path(out))
        n = len(store.answers(args.name))
    print(f"{path} ({n} answers)")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("reader-study", help="blinded 'real or generated?' reader studies (create, results, export)")
    rs = p.add_subparsers(dest="reader_study_command", required=True)

    def common(q):
        q.add_argument("--workspace", default=str(default_workspace()),
                       help="workspace folder (default: $MEDART_WORKSPACE, else <home>/workspace with <home> $MEDART_HOME or ., as the app)")

    q = rs.add_parser("create", help="k real held-out images and k generated from a run, identically encoded")
    common(q)
    q.add_argument("--name", required=True, help="study name (unique in the workspace)")
    q.add_argument("--run", required=True, help="run folder whose adapter generates the images")
    q.add_argument("--split", default="test", help="workspace split of the held-out real images (default test)")
    q.add_argument("--k", type=int, help="images of each kind (default: every image of the split)")
    q.add_argument("--seed", type=int, help="chooses the real images; image i is generated with seed+i (default: "
                                          "drawn at random and kept in the study only; never tell readers)")
    q.add_argument("--base-model", help="profile, local folder or hub id (default: the run's base)")
    q.add_argument("--steps", type=int, default=20, help="solver steps (default 20)")
    q.add_argument("--cfg", type=float, default=4.5, help="classifier-free guidance (default 4.5)")
    q.add_argument("--size", type=int, help="generation size in pixels (default: the base model's)")
    q.add_argument("--display-size", type=int,
                   help="pixels shown, both kinds (default: the smallest side of any study image)")
    q.add_argument("--batch-size", type=int, default=4)
    q.add_argument("--owner-code", action="store_true",
                   help=f"give the study an owner code, which the app asks before it shows results: read from "
                        f"${OWNER_CODE_ENV}, else asked for (without it: set one later with `owner-code`)")
    q.set_defaults(func=cmd_create)

    from medart.reader_study import READER_URL

    def link_url(q):
        q.add_argument("--url", default=READER_URL,
                       help=f"the reader server's address, for the links (default {READER_URL})")

    q = rs.add_parser("invite", help="add a reader (a label of your choice) and print their invitation link")
    common(q)
    q.add_argument("--name", required=True, help="study name")
    q.add_argument("--label", required=True, help="the reader's label (a name, initials: yours to choose)")
    link_url(q)
    q.set_defaults(func=cmd_invite)

    q = rs.add_parser("readers", help="each reader's label, progress and invitation link")
    common(q)
    q.add_argument("--name", required=True, help="study name")
    link_url(q)
    q.set_defaults(func=cmd_readers)

    q = rs.add_parser("revoke", help="revoke a reader's invitation link (their answers stay)")
    common(q)
    q.add_argument("--name", required=True, help="study name")
    q.add_argument("--label", required=True, help="the reader's label")
    q.set_defaults(func=cmd_revoke)

    q = rs.add_parser("close", help="close a study: no more answers; then its answers can be exported")
    common(q)
    q.add_argument("--name", required=True, help="study name")
    q.set_defaults(func=cmd_close)

    q = rs.add_parser("list", help="studies, readers and their progress")
    common(q)
    q.set_defaults(func=cmd_list)

    q = rs.add_parser("results", help="accuracy vs chance, sensitivity/specificity, realism, kappa")
    common(q)
    q.add_argument("--name", required=True, help="study name")
    q.add_argument("--plot", help="write the results plot (PNG) here")
    q.add_argument("--json", action="store_true", help="print the numbers as JSON instead of a table")
    q.set_defaults(func=cmd_results)

    q = rs.add_parser("export", help="every answer as CSV, with the truth (a closed study only)")
    common(q)
    q.add_argument("--name", required=True, help="study name")
    q.add_argument("--out", help="CSV file (default reader-study-NAME.csv)")
    q.set_defaults(func=cmd_export)

    q = rs.add_parser("owner-code", help="set the owner code the app asks before it shows a study's results")
    common(q)
    q.add_argument("--name", required=True, help="study name")
    q.add_argument("--replace", action="store_true", help="replace the study's code (e.g. a forgotten one)")
    q.set_defaults(func=cmd_owner_code)
