from typing import Any

DECISION: int
OPENED: int
CLOSED: int
OPPORTUNITY: int

OUTCOMES: str

def expand_batch(events: list[dict[str, Any]], types: frozenset[str] | None = None) -> list[dict[str, Any]]: ...
def expand_outcomes(event: dict[str, Any]) -> list[dict[str, Any]]: ...
