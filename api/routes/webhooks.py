"""Webhook endpoints: register and manage them, inspect deliveries, redeliver, test."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response
from flask.views import MethodView

from api.auth import current_principal
from api.blueprint import Blueprint
from api.context import tally
from api.database import request_connection, request_unit_of_work
from api.guard import MANUAL_WEBHOOK_POLICY
from api.respond import json_response
from api.webhook_schemas import (
    DeliveryQuerySchema,
    RecoverResultSchema,
    RecoverSchema,
    RotateSecretSchema,
    WebhookDeliveryPageSchema,
    WebhookDeliverySchema,
    WebhookEndpointCreateSchema,
    WebhookEndpointSchema,
    WebhookEndpointUpdateSchema,
    WebhookEndpointWithSecretSchema,
)
from ledger.vocabulary import Scope
from ledger.webhooks import deliveries, endpoints

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/api/v1/webhook-endpoints",
    description="Webhook endpoints, their deliveries, redelivery and test events.",
)


def _tenant() -> uuid.UUID:
    return current_principal().tenant_id


@blp.route("")
class WebhookEndpoints(MethodView):
    @blp.requires(Scope.ADMIN)
    @blp.arguments(WebhookEndpointCreateSchema)
    @blp.response(201, WebhookEndpointWithSecretSchema)
    @blp.problem(409, "webhook_endpoint_limit_reached")
    @blp.problem(422, "webhook_url_refused")
    def post(self, body: dict[str, Any]) -> Response:
        """Register an endpoint; the answer carries its signing secret, shown only now."""
        ctx = tally()
        with request_unit_of_work() as work:
            endpoint = endpoints.create_endpoint(
                work,
                _tenant(),
                url=body["url"],
                event_types=body.get("event_types"),
                description=body.get("description"),
                box=ctx.secret_box,
                allow_private=ctx.settings.webhook_allow_private_targets,
                actor=current_principal().actor,
            )
        return json_response(endpoint, 201)

    @blp.response(200, WebhookEndpointSchema(many=True))
    def get(self) -> Response:
        """The tenant's endpoints."""
        with request_connection() as conn:
            return json_response(endpoints.list_endpoints(conn, _tenant()))


@blp.route("/<uuid:endpoint_id>")
class WebhookEndpoint(MethodView):
    @blp.response(200, WebhookEndpointSchema)
    @blp.problem(404, "webhook_endpoint_not_found")
    def get(self, endpoint_id: uuid.UUID) -> Response:
        """One endpoint."""
        with request_connection() as conn:
            return json_response(endpoints.get_endpoint(conn, _tenant(), endpoint_id))

    @blp.requires(Scope.ADMIN)
    @blp.arguments(WebhookEndpointUpdateSchema)
    @blp.response(200, WebhookEndpointSchema)
    @blp.problem(404, "webhook_endpoint_not_found")
    @blp.problem(422, "webhook_url_refused")
    def patch(self, body: dict[str, Any], endpoint_id: uuid.UUID) -> Response:
        """Change the URL, event types or description; enable or disable the endpoint."""
        ctx = tally()
        with request_unit_of_work() as work:
            endpoint = endpoints.update_endpoint(
                work,
                _tenant(),
                endpoint_id,
                body,
                allow_private=ctx.settings.webhook_allow_private_targets,
                actor=current_principal().actor,
            )
        return json_response(endpoint)

    @blp.requires(Scope.ADMIN)
    @blp.response(204)
    @blp.problem(404, "webhook_endpoint_not_found")
    def delete(self, endpoint_id: uuid.UUID) -> Response:
        """Delete an endpoint; deliveries waiting for it are failed."""
        with request_unit_of_work() as work:
            endpoints.delete_endpoint(
                work,
                _tenant(),
                endpoint_id,
                actor=current_principal().actor,
            )
        # No body, so no Content-Type (Werkzeug would default to text/html).
        response = Response(status=204)
        response.headers.pop("Content-Type", None)
        return response


@blp.route("/<uuid:endpoint_id>/rotate-secret")
class RotateSecret(MethodView):
    @blp.requires(Scope.ADMIN)
    @blp.arguments(RotateSecretSchema)
    @blp.response(200, WebhookEndpointWithSecretSchema)
    @blp.problem(404, "webhook_endpoint_not_found")
    def post(self, body: dict[str, Any], endpoint_id: uuid.UUID) -> Response:
        """Issue a new secret; the old one keeps signing alongside it during the overlap."""
        ctx = tally()
        with request_unit_of_work() as work:
            endpoint = endpoints.rotate_secret(
                work,
                _tenant(),
                endpoint_id,
                overlap_seconds=body.get(
                    "overlap_seconds", ctx.settings.webhook_secret_overlap_seconds
                ),
                box=ctx.secret_box,
                actor=current_principal().actor,
            )
        return json_response(endpoint)


@blp.route("/<uuid:endpoint_id>/test")
class TestEvent(MethodView):
    @blp.rate_policy(MANUAL_WEBHOOK_POLICY)
    @blp.response(202, WebhookDeliverySchema)
    @blp.problem(404, "webhook_endpoint_not_found")
    @blp.problem(409, "webhook_endpoint_disabled")
    def post(self, endpoint_id: uuid.UUID) -> Response:
        """Send a signed `webhook.test` event to the endpoint."""
        with request_unit_of_work() as work:
            delivery = deliveries.send_test_event(work, _tenant(), endpoint_id)
        return json_response(delivery, 202)


@blp.route("/<uuid:endpoint_id>/recover")
class Recover(MethodView):
    @blp.rate_policy(MANUAL_WEBHOOK_POLICY)
    @blp.arguments(RecoverSchema)
    @blp.response(202, RecoverResultSchema)
    @blp.problem(404, "webhook_endpoint_not_found")
    @blp.problem(409, "webhook_endpoint_disabled")
    def post(self, body: dict[str, Any], endpoint_id: uuid.UUID) -> Response:
        """Redeliver every failed delivery of events since `since`."""
        with request_unit_of_work() as work:
            count = deliveries.recover_failed(
                work,
                _tenant(),
                endpoint_id,
                body["since"],
                body.get("until"),
            )
        return json_response({"redelivered": count}, 202)


@blp.route("/<uuid:endpoint_id>/deliveries")
class Deliveries(MethodView):
    @blp.arguments(DeliveryQuerySchema, location="query")
    @blp.response(200, WebhookDeliveryPageSchema)
    @blp.problem(400, "invalid_cursor")
    @blp.problem(404, "webhook_endpoint_not_found")
    def get(self, query: dict[str, Any], endpoint_id: uuid.UUID) -> Response:
        """The endpoint's deliveries, newest first, each with its attempts."""
        with request_connection() as conn:
            page = deliveries.list_deliveries(
                conn,
                _tenant(),
                endpoint_id,
                status=query.get("status"),
                limit=query["limit"],
                cursor=query.get("cursor"),
            )
        return json_response(page)


@blp.route("/<uuid:endpoint_id>/deliveries/<uuid:delivery_id>")
class Delivery(MethodView):
    @blp.response(200, WebhookDeliverySchema)
    @blp.problem(404, "webhook_endpoint_not_found", "webhook_delivery_not_found")
    def get(self, endpoint_id: uuid.UUID, delivery_id: uuid.UUID) -> Response:
        """One delivery with every attempt."""
        with request_connection() as conn:
            delivery = deliveries.get_delivery(
                conn,
                _tenant(),
                endpoint_id,
                delivery_id,
            )
        return json_response(delivery)


@blp.route("/<uuid:endpoint_id>/deliveries/<uuid:delivery_id>/retry")
class Retry(MethodView):
    @blp.rate_policy(MANUAL_WEBHOOK_POLICY)
    @blp.response(202, WebhookDeliverySchema)
    @blp.problem(404, "webhook_endpoint_not_found", "webhook_delivery_not_found")
    @blp.problem(409, "webhook_endpoint_disabled", "webhook_delivery_in_flight")
    def post(self, endpoint_id: uuid.UUID, delivery_id: uuid.UUID) -> Response:
        """Redeliver one delivery now, with the same webhook-id."""
        with request_unit_of_work() as work:
            delivery = deliveries.redeliver(
                work,
                _tenant(),
                endpoint_id,
                delivery_id,
            )
        return json_response(delivery, 202)
