"""Errors of the webhook use cases; the API maps each family to its HTTP status."""

from __future__ import annotations

from ledger.errors import Conflict, NotFound


class EndpointNotFound(NotFound):
    code = "webhook_endpoint_not_found"


class DeliveryNotFound(NotFound):
    code = "webhook_delivery_not_found"


class EndpointDisabled(Conflict):
    """Redelivery and test events need an enabled endpoint."""

    code = "webhook_endpoint_disabled"


class DeliveryInFlight(Conflict):
    """A dispatcher holds the delivery right now; its attempt decides what comes next."""

    code = "webhook_delivery_in_flight"


class TooManyEndpoints(Conflict):
    code = "webhook_endpoint_limit_reached"
