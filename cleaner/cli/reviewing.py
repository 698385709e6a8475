"""Review commands: ``review`` (the local page) and the Label Studio round trip."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cleaner.cli.base import (
    app,
    export_app,
    friendly_errors,
    import_app,
)
from cleaner.cli.printing import (
    count_table,
    print_review_start,
)
from cleaner.core.errors import InputError
from cleaner.core.progress import console

if TYPE_CHECKING:
    from cleaner.review.labelstudio_annotations import AnnotationsSummary


@app.command()
@friendly_errors
def review(
    queue: Path = typer.Argument(
        ..., metavar="QUEUE", help="A queue.csv made by `cleaner flag` (queue.json beside it)."
    ),
    port: int = typer.Option(8765, "--port", help="Port on 127.0.0.1; 0 picks a free one."),
    no_browser: bool = typer.Option(False, "--no-browser", metavar="", help="Only print the URL."),
    allow_host: list[str] = typer.Option(
        [],
        "--allow-host",
        metavar="HOST:PORT",
        help="Also answer this HOST:PORT (repeatable), e.g. localhost:9000 behind "
        "`ssh -L 9000:localhost:8765 BOX`; still 127.0.0.1 only, token still needed.",
    ),
) -> None:
    """Review the queue in a local page: one image at a time, decisions saved to the CSV at once."""
    import webbrowser

    from cleaner.review.server import serve

    server, url = serve(queue, port=port, allow_hosts=allow_host)
    print_review_start(server, url)
    if not no_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    console.print(
        f"stopped: {server.queue.reviewed} of {len(server.queue)} rows reviewed in {queue}"
    )


@export_app.command("labelstudio")
@friendly_errors
def export_labelstudio(
    queue: Path = typer.Argument(..., metavar="QUEUE", help="A queue.csv made by `cleaner flag`."),
    out: Path | None = typer.Option(
        None, "--out", help="Tasks file (default QUEUE.labelstudio.json); FILE.xml beside it."
    ),
    image_prefix: str | None = typer.Option(
        None, "--image-prefix", help="Image URL = PREFIX + the manifest's path (no local files)."
    ),
    document_root: Path | None = typer.Option(
        None,
        "--document-root",
        help="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: the manifest's folder, or the "
        "folder above it and every image).",
    ),
) -> None:
    """Label Studio tasks of the queue (suggestions pre-annotated) and their labeling config."""
    from cleaner.review.labelstudio_export import write_tasks

    s = write_tasks(queue, out, image_prefix=image_prefix, document_root=document_root)
    console.print(
        f"wrote {s.tasks:,} tasks ({s.predictions:,} with the suggestion pre-annotated) to "
        f"{s.tasks_json} and the labeling config to {s.config_xml}",
        highlight=False,
        soft_wrap=True,
    )
    if s.document_root is not None:
        console.print(
            "images are Label Studio local files: start it with "
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
            f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={s.document_root.resolve()}, "
            "and add a Local Files storage under that folder (no sync)",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"paste {s.config_xml.name} into the project's labeling interface (Code), import "
        f"{s.tasks_json.name}; then export JSON and run `cleaner import labelstudio EXPORT.json "
        f"{queue}`",
        highlight=False,
        soft_wrap=True,
    )


@import_app.command("labelstudio")
@friendly_errors
def import_labelstudio(
    export: Path = typer.Argument(
        ..., metavar="EXPORT", help="A Label Studio JSON export of the exported tasks."
    ),
    queue: Path = typer.Argument(
        ..., metavar="QUEUE", help="The queue.csv the tasks were exported from."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        metavar="",
        help="Replace decisions already in the queue with Label Studio's.",
    ),
    annotations: Path | None = typer.Option(
        None,
        "--annotations",
        metavar="OUT.csv",
        help="Instead: write every annotator's label to OUT.csv (sample_id,annotator,label,"
        "time; for `cleaner ingest csv --annotations`); the queue is not changed.",
    ),
) -> None:
    """Write the answers of a Label Studio export into the queue's decision column."""
    if annotations is not None and force:
        raise InputError("--force replaces decisions in the queue; --annotations writes none")
    if annotations is not None:
        from cleaner.review.labelstudio_annotations import write_annotations

        _print_annotations(write_annotations(export, queue, annotations))
        return
    from cleaner.review.labelstudio_import import import_export

    s = import_export(export, queue, force=force)
    counts = {**s.counts, "already in the queue": s.unchanged, "not annotated": s.not_annotated}
    console.print(count_table(f"imported {export}", "decision", "tasks", counts))
    if s.replaced:
        console.print(f"{s.replaced:,} decisions already in the queue were replaced (--force)")
    if s.wrote:
        console.print(
            f"wrote the decisions into {queue}; next: cleaner apply {queue}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(f"no new decision: {queue} is unchanged", highlight=False, soft_wrap=True)


def _print_annotations(s: AnnotationsSummary) -> None:
    """What ``import labelstudio --annotations`` wrote: lines per annotator, answers skipped."""
    console.print(count_table("annotations written", "annotator", "labels", s.per_annotator))
    skipped = ", ".join(f"{n:,} {answer}" for answer, n in s.skipped.items())
    console.print(
        f"wrote {s.written:,} annotations by {len(s.per_annotator):,} annotators to {s.out}"
        + (f"; skipped (no label): {skipped}" if skipped else ""),
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"next: cleaner ingest csv TABLE --path-col COLUMN --annotations {s.out}",
        highlight=False,
        soft_wrap=True,
    )
