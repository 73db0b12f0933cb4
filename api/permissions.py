"""Who may do what: each operation needs a key scope; the guard checks it before the view.

A view declares the scope it needs with `@blp.requires(Scope.ADMIN)`; without one, reads
(GET, HEAD) need `read` and every other method needs `write`. Scopes nest: an admin key
may do anything a write key may, a write key anything a read key may. The one decision
made inside a use case is the adjustment, a transaction type only admin keys may submit
(ledger/intake.py), since its route is shared with every other type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from api.problems import ApiProblem
from ledger.keys import Principal
from ledger.vocabulary import Scope

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# How a view submits transactions (`_submission`, set by api/blueprint.py): one, or a batch.
SINGLE = "single"
BATCH = "batch"
# The problem code a key of too small a scope gets, by the scope it lacks.
REFUSALS = {
    Scope.READ: "read_key_required",
    Scope.WRITE: "write_key_required",
    Scope.ADMIN: "admin_key_required",
}


def declared_scope(view: Callable[..., Any]) -> Scope | None:
    scope: Scope | None = getattr(view, "_required_scope", None)
    return scope


def handler_of(view_function: Callable[..., Any], method: str) -> Callable[..., Any] | None:
    """The function that serves `method` for a Flask view: a MethodView's method, or the
    view function itself."""
    view_class = getattr(view_function, "view_class", None)
    if view_class is None:
        return view_function
    handler: Callable[..., Any] | None = getattr(
        view_class, "get" if method == "HEAD" else method.lower(), None
    )
    return handler


def required_scope(view_function: Callable[..., Any], method: str) -> Scope:
    """The scope the operation (a Flask view function and the request's method) needs."""
    handler = handler_of(view_function, method)
    declared = declared_scope(handler) if handler is not None else None
    if declared is not None:
        return declared
    return Scope.READ if method in READ_METHODS else Scope.WRITE


def authorize(principal: Principal, needed: Scope) -> None:
    """Refuse with 403 unless the caller's key has `needed` (or a wider scope)."""
    if principal.scope.allows(needed):
        return
    raise ApiProblem(
        403,
        REFUSALS[needed],
        f"This operation needs a key with the {needed} scope; this key's scope is"
        f" {principal.scope}.",
        headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{needed}"'},
    )
