"""The metric protocols by name: "paper" (the authors' procedure, `paper_metrics`) and
"standard" (the field's, `standard_metrics`); a protocol choice is one of them or "both"."""

from __future__ import annotations

PROTOCOLS = ("paper", "standard")
PROTOCOL_CHOICES = (*PROTOCOLS, "both")


def chosen_protocols(choice: str) -> tuple[str, ...]:
    """The protocols a choice ("paper", "standard" or "both") computes, in report order; a
    ValueError naming the choice for anything else."""
    if choice not in PROTOCOL_CHOICES:
        raise ValueError(f"protocol must be one of {PROTOCOL_CHOICES}, got {choice!r}")
    return PROTOCOLS if choice == "both" else (choice,)
