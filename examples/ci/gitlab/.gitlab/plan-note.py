"""Post a reconciler plan (markdown) as ONE note on the merge request, updated on every push.

The note is found again by the marker line the plan starts with (`<!-- reconciler-plan fleet=FID -->`), so a
pipeline edits its note instead of adding one per push. Standard library only: it runs in the job's Python.

    python .gitlab/plan-note.py plan.md

Reads GitLab's predefined CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID, CI_COMMIT_SHA and CI_JOB_URL, and
PLAN_NOTE_TOKEN: a project access token (role Reporter, scope `api`); the job token may not write notes. Without
the token the note is left out with a warning (the merge request widget still shows the counts).
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

MARKER = re.compile(r"^<!-- reconciler-plan fleet=\S+ -->$")
NOTE_LIMIT = 1_000_000  # characters GitLab keeps in a note
TIMEOUT = 30


def call(method: str, url: str, token: str, body: dict[str, str] | None = None) -> tuple[Any, str | None]:
    """One API request: (its JSON answer, the next page's number when the answer is paged)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("PRIVATE-TOKEN", token)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
        return json.load(answer), answer.headers.get("X-Next-Page") or None


def ours(note: dict[str, Any], user: int, marker: str) -> bool:
    """A note this pipeline posted before: written by the token's user, starting with the plan's marker."""
    author = note.get("author") or {}
    return not note.get("system") and author.get("id") == user and str(note.get("body", "")).startswith(marker)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: plan-note.py PLAN.md", file=sys.stderr)
        return 64
    token = os.environ.get("PLAN_NOTE_TOKEN", "")
    if not token:
        print("warning: PLAN_NOTE_TOKEN is not set: the plan is not posted on the merge request", file=sys.stderr)
        return 0
    with open(argv[1], encoding="utf-8") as file:
        body = file.read()
    marker = body.split("\n", 1)[0].strip()
    if not MARKER.match(marker):
        print(f"{argv[1]} does not start with the plan marker: {marker[:80]}", file=sys.stderr)
        return 1
    missing = [name for name in ("CI_API_V4_URL", "CI_PROJECT_ID", "CI_MERGE_REQUEST_IID") if not os.environ.get(name)]
    if missing:
        print(f"not in a merge request pipeline: {', '.join(missing)} not set", file=sys.stderr)
        return 1
    commit, job = os.environ.get("CI_COMMIT_SHA", "?"), os.environ.get("CI_JOB_URL", "this job")
    footer = f"\n\n<sub>Plan of {commit}; the plan file is an artifact of {job}.</sub>\n"
    if len(body) + len(footer) <= NOTE_LIMIT:
        body += footer
    project = urllib.parse.quote(os.environ["CI_PROJECT_ID"], safe="")
    request = os.environ["CI_MERGE_REQUEST_IID"]
    notes = f"{os.environ['CI_API_V4_URL']}/projects/{project}/merge_requests/{request}/notes"
    try:
        # only a note of the token's own user: another participant's note may quote the marker
        me, _ = call("GET", f"{os.environ['CI_API_V4_URL']}/user", token)
        page: str | None = "1"
        previous = None
        while page and previous is None:
            listed, page = call("GET", f"{notes}?per_page=100&page={page}", token)
            previous = next((n for n in listed if ours(n, me["id"], marker)), None)
        if previous is not None:
            call("PUT", f"{notes}/{previous['id']}", token, {"body": body})
            print(f"updated note {previous['id']}")
        else:
            created, _ = call("POST", notes, token, {"body": body})
            print(f"created note {created['id']}")
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as error:
        print(f"could not post the plan on the merge request: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
