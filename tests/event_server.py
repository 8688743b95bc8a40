"""Moved to tests/helpers/events.py (the one home of the live-event test helpers); the old names still work."""

from tests.helpers.events import (  # noqa: F401
    REPO, SEED, SLOTS, TRACK, Server, call, copy_db, free_port, own, live, shared, template,
)
