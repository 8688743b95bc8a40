"""An event's results for the instructor and the board: the ranking with each participant's counts,
verification, upload and refusals (`autograder event export`, the admin's CSV), the roster's personal
codes, the projector's board link."""

from __future__ import annotations

import csv
import io
import json
import time

from autograder.event import limits
from autograder.event import store as store_module
from autograder.event.store import Store, rank
from autograder.results.spreadsheet import safe_cell
from course import config

RULE = ("Ranking: passed (accuracy at least {target:.0%}) first, then fewest annotations, then higher accuracy, "
        "then earlier submission. One counted submission per participant.")


def board_link(code: str, admin_token: str) -> str:
    """The projector's board link of event `code` (its key never locked out: `limits`), from its admin token."""
    return f"/board/{code}?key={limits.board_key(store_module.token_hash(admin_token), code)}"


def invites_csv(invites: list[dict]) -> str:
    """The roster with its personal codes, for the instructor to hand out."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "personal_code", "joined"])
    for row in invites:
        writer.writerow([safe_cell(row["name"]), row["code"], int(row["participant"] is not None)])
    return out.getvalue()


def _iso(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def results(store: Store, code: str) -> dict:
    """Everything an event's results are, for `autograder event export` and the admin's CSV: the ranking
    (never frozen), each participant's counts, submission, verification, upload and refusals."""
    event = store.event(code)
    rows = rank(store.standings(code))
    checks, uploads, refusals = store.verifications(code), store.uploads(code), store.refusals(code)
    out = []
    for r in rows:
        check, upload = checks.get(r["id"]), uploads.get(r["id"])
        out.append({
            "rank": r["rank"], "id": r["id"], "name": r["name"], "display_name": r["display"],
            "passed": bool(r["passed"]), "accuracy": r["accuracy"], "annotations": r["annotations"],
            "n_images": r["n"], "live_annotations": r["count"], "joined_at": _iso(r["joined"]),
            "submitted_at": _iso(r["submitted"]),
            "verified": None if check is None else check["status"],
            "verification": None if check is None else {**check, "time": _iso(check["time"])},
            "notebook_uploaded_at": None if upload is None else _iso(upload["time"]),
            "refusals": {reason: c["n"] for reason, c in sorted(refusals.get(r["id"], {}).items())},
        })
    return {"event": code, "assignment": event.assignment, "track": event.track_name,
            "created_at": _iso(event.created), "frozen_at": _iso(event.frozen_at), "closed_at": _iso(event.closed_at),
            "exported_at": _iso(time.time()), "rule": RULE.format(target=config.TARGET_ACCURACY),
            "participants": out}


RESULT_COLUMNS = ("rank", "name", "display_name", "passed", "annotations", "accuracy", "n_images", "submitted_at",
                  "live_annotations", "id", "joined_at", "verified", "verified_detail", "notebook_uploaded_at",
                  "refused")  # the first nine as `Store.results_csv` has them


def results_csv(doc: dict) -> str:
    """The results as CSV (one row per participant, ranked; names as inert spreadsheet text)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(RESULT_COLUMNS)
    for r in doc["participants"]:
        check = r["verification"] or {}
        writer.writerow([
            "" if r["rank"] is None else r["rank"], safe_cell(r["name"]), r["display_name"], int(r["passed"]),
            "" if r["annotations"] is None else r["annotations"],
            "" if r["accuracy"] is None else f"{r['accuracy']:.6f}", r["n_images"] or "", r["submitted_at"] or "",
            r["live_annotations"], r["id"], r["joined_at"] or "", r["verified"] or "",
            safe_cell(check.get("detail") or ""),
            r["notebook_uploaded_at"] or "", "; ".join(f"{k} {n}" for k, n in r["refusals"].items())])
    return out.getvalue()


def results_json(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def verified(check: dict | None) -> dict:
    """What the board shows of a verification: its status, and the re-run's numbers when they differ."""
    if check is None:
        return {"verified": None}
    out = {"verified": check["status"]}
    if check["status"] == "differs":
        out.update(verified_accuracy=check["accuracy"], verified_annotations=check["annotations"])
    if check["status"] == "review":
        out["verified_note"] = review_note(check)
    return out


def review_note(check: dict) -> str:
    """Why a verification asks for review, as the board says it: the hidden track is not named (it stays
    the instructor's; the admin page gives its numbers)."""
    accuracy, annotations = check.get("hidden_accuracy"), check.get("hidden_annotations")
    if accuracy is None or annotations is None:
        return "no submission on a hidden track"
    if accuracy < config.TARGET_ACCURACY:
        return f"fails on a hidden track ({accuracy:.1%})"
    return f"{annotations} annotations on a hidden track"
