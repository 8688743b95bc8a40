"""Live event mode: an event server that holds the labels and drives a live leaderboard.

    autograder event create --track 7,1 --assignment 03_clustering   # prints join code and admin token
    autograder serve --host 0.0.0.0 --port 8000                      # then open /board on the projector

- `store`: events, participants, charges, ledgers, submissions, refusal counts (SQLAlchemy; SQLite WAL by default);
- `pool`: an event's pool file and truth, shuffled with the event's secret seed (made at create);
- `app`: the FastAPI server; every participant request goes through `course.protocol.Rules`;
- `parts`: an annotate call larger than one request, kept part by part and answered as one call;
- `pages`: the board and the admin page (self-contained HTML);
- `verify`: ``autograder verify``, the winners' notebooks re-run in the sandboxed grader on the event's
  data, then on a hidden track;
- `cli`: the ``serve``, ``event create`` and ``verify`` commands.

The participant side is `course.event` (stdlib + numpy only).
"""
