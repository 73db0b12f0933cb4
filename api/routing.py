"""URL routing where a path belongs to one rule: the most specific rule that matches it.

werkzeug tries a less specific rule when the most specific one does not serve the method:
`PATCH /wallets/topup` would reach `PATCH /wallets/<user_id>`, and `OPTIONS` (and a 405)
would list the methods of every rule the path matches. Here the path's own rule answers:
any method it does not serve is 405, and `Allow` names exactly the methods it serves, as
the OpenAPI document describes each path (concrete paths before templated ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, MapAdapter, Rule

# Flask gives every rule OPTIONS: matching with it finds a path's rule whatever the method.
_ANY_RULE = "OPTIONS"


class OwnedPathAdapter(MapAdapter):
    """A MapAdapter that only ever dispatches to the most specific rule of the path."""

    def match(
        self,
        path_info: str | None = None,
        method: str | None = None,
        return_rule: bool = False,
        query_args: Mapping[str, Any] | str | None = None,
        websocket: bool | None = None,
    ) -> tuple[Any, Mapping[str, Any]]:
        try:
            rule, values = super().match(path_info, method, True, query_args, websocket)
        except MethodNotAllowed as refused:
            methods = self._path_methods(path_info, query_args, websocket)
            if not methods:
                raise
            raise MethodNotAllowed(valid_methods=methods) from refused
        owner = self._owner(path_info, query_args, websocket)
        # A path's rule may come as several rules of one text, one per method (the console).
        if owner is not None and owner.rule != rule.rule:
            raise MethodNotAllowed(
                valid_methods=self._path_methods(path_info, query_args, websocket)
            )
        return (rule if return_rule else rule.endpoint), values

    def _owner(
        self,
        path_info: str | None,
        query_args: Mapping[str, Any] | str | None,
        websocket: bool | None,
    ) -> Rule | None:
        """The most specific rule matching the path, or None (a rule without OPTIONS)."""
        try:
            return super().match(path_info, _ANY_RULE, True, query_args, websocket)[0]
        except (MethodNotAllowed, NotFound):
            return None

    def _path_methods(
        self,
        path_info: str | None,
        query_args: Mapping[str, Any] | str | None,
        websocket: bool | None,
    ) -> list[str]:
        """The methods the rules of the path's own rule text serve."""
        owner = self._owner(path_info, query_args, websocket)
        if owner is None:
            return []
        methods: set[str] = set()
        for rule in self.map.iter_rules():
            if rule.rule == owner.rule and rule.methods:
                methods |= rule.methods
        return sorted(methods)


class OwnedPathMap(Map):
    """The URL map of the API: binds `OwnedPathAdapter`s."""

    def bind(self, *args: Any, **kwargs: Any) -> MapAdapter:
        adapter = super().bind(*args, **kwargs)
        adapter.__class__ = OwnedPathAdapter
        return adapter

    # werkzeug's bind_to_environ calls Map.bind itself, not self.bind.
    def bind_to_environ(self, *args: Any, **kwargs: Any) -> MapAdapter:
        adapter = super().bind_to_environ(*args, **kwargs)
        adapter.__class__ = OwnedPathAdapter
        return adapter


class RoutedFlask(Flask):
    """Flask with `OwnedPathMap` routing."""

    url_map_class = OwnedPathMap
