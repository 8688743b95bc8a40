"""The event server's routes, one `fastapi.APIRouter` per audience: `participant` (join, the pool,
annotations and submissions, the notebook upload), `board` (the public board, its JSON and stream),
`admin` (the instructor's page and API). `autograder.event.app` assembles them."""
