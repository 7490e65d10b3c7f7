"""Operations endpoints that django-oscar-api's admin API lacks, for connector tests.

Every endpoint needs Token (or Basic) auth of a *staff* user holding the Django model
permission named below; anonymous → 401, a non-staff or under-privileged user → 403
`{"detail": "You do not have permission to perform this action."}`. Unknown id → 404.

  GET   /api/admin/orders/<pk>/status/                                   order.view_order
        200 {"id", "number", "status", "available_statuses"}
  PATCH /api/admin/orders/<pk>/status/ {"status": "Being processed"}    order.change_order
  (PUT) 200 {"id", "number", "old_status", "status", "available_statuses"}
        409 {"detail", "status", "available_statuses"}   not allowed by the status pipeline
  GET   /api/ops/orders/?status=Pending&status=…&since=ISO&until=ISO&page=N   order.view_order
        200 {"count", "next", "previous", "results": [order summary]}  oldest first (date_placed,
        id); `since` inclusive, `until` exclusive; ISO 8601, naive means UTC; 400 on bad input
  POST  /api/ops/stockrecords/<id>/adjust/ {"delta": -2, "idempotency_key": "k", "reason": "…"}
                                                                      partner.change_stockrecord
        200 {"stockrecord", "partner_sku", "delta", "num_in_stock", "num_allocated",
             "low_stock_threshold", "is_below_threshold", "idempotency_key"}
        409 {"detail", "num_in_stock", "delta"}   stock would go below zero (nothing applied)
  GET   /api/ops/orders/<pk>/notes/                                       order.view_order
        200 [{"id", "order", "message", "note_type", "user", "date_created"}]
  POST  /api/ops/orders/<pk>/notes/ {"message": "…", "note_type": "Info"} order.change_order
        201 {"id", "order", "message", "note_type", "user", "date_created"}
  POST  /api/ops/orders/<pk>/fulfil/ {"idempotency_key": "k", "reference": "tracking no."}
        200 {"id", "number", "old_status", "status": "Shipped", "shipping_event", "reference",
             "lines": [{"line", "partner_sku", "quantity"}]}                order.change_order
        409 as for a status change (fulfilling needs status "Being processed"), or when the
        stock allocation cannot be consumed. Ships every line: records an Oscar shipping
        event "Shipped" and consumes the allocations (num_in_stock and num_allocated drop).

Idempotency (adjust, fulfil; notes when a key is given): the key may also come as the
`Idempotency-Key` header. The first successful answer is stored per (endpoint, key) and
returned again, unchanged, to every retry with that key, with the header
`Idempotent-Replayed: true`; the same key with a different request → 422. Refusals are not
stored, so a retry after fixing the cause applies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from oscar.apps.order.exceptions import InvalidOrderStatus
from oscar.apps.partner.exceptions import InvalidStockAdjustment
from oscar.core.loading import get_class, get_model
from rest_framework import generics, serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from shop.models import IdempotentRequest

Order = get_model("order", "Order")
OrderNote = get_model("order", "OrderNote")
ShippingEventType = get_model("order", "ShippingEventType")
StockRecord = get_model("partner", "StockRecord")
EventHandler = get_class("order.processing", "EventHandler")

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_timestamp = serializers.DateTimeField()  # renders like oscarapi's own fields ("…Z")


class StaffModelPermission(BasePermission):
    """Staff users with every permission the view lists for the request's method."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_staff):
            return False
        method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
        needed = view.required_perms.get(method)
        return needed is None or user.has_perms(needed)  # None: the view answers 405


class Refusal(Exception):
    """Ends a request with `status_code` and `body`; raised inside a transaction, rolls it back."""

    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.status_code = status_code
        self.body = body


class OpsView(APIView):
    permission_classes = (StaffModelPermission,)
    required_perms: ClassVar[dict[str, tuple[str, ...]]] = {}

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, Refusal):
            return Response(exc.body, status=exc.status_code)
        return super().handle_exception(exc)


def _order_status(order: Any) -> dict[str, Any]:
    return {
        "id": order.pk,
        "number": order.number,
        "status": order.status,
        "available_statuses": list(order.available_statuses()),
    }


def _set_status(order: Any, new_status: str) -> str:
    """Move `order` through Oscar's pipeline, return the old status; Refusal(409) if refused."""
    old_status = order.status
    try:
        order.set_status(new_status)
    except InvalidOrderStatus as exc:
        raise Refusal(
            status.HTTP_409_CONFLICT,
            {"detail": str(exc), **_order_status(order)},
        ) from exc
    return old_status


def _required_text(data: Any, field: str, max_length: int = 10_000) -> str:
    value = data.get(field) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise Refusal(status.HTTP_400_BAD_REQUEST, {field: ["This field is required."]})
    if len(value) > max_length:
        raise Refusal(
            status.HTTP_400_BAD_REQUEST,
            {field: [f"Ensure this field has no more than {max_length} characters."]},
        )
    return value


def _idempotency_key(request: Request, *, required: bool) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None and isinstance(request.data, dict):
        key = request.data.get("idempotency_key")
    if key is None and not required:
        return None
    if not isinstance(key, str) or not key.strip() or len(key) > 255:
        raise Refusal(
            status.HTTP_400_BAD_REQUEST,
            {
                "idempotency_key": [
                    "Required: 1-255 characters, in the body or the Idempotency-Key header."
                ]
            },
        )
    return key


def _run_once(
    scope: str, key: str | None, request_input: dict[str, Any], apply: Callable[[], Response]
) -> Response:
    """Run `apply` in one transaction; with a key, at most once (see the module docstring)."""
    with transaction.atomic():
        if key is None:
            return apply()
        fingerprint = hashlib.sha256(
            json.dumps(request_input, sort_keys=True, default=str).encode()
        ).hexdigest()
        stored = IdempotentRequest.objects.select_for_update().filter(scope=scope, key=key).first()
        if stored is not None:
            if stored.fingerprint != fingerprint:
                raise Refusal(
                    status.HTTP_422_UNPROCESSABLE_ENTITY,
                    {
                        "detail": f"idempotency key {key!r} was already used for a different "
                        f"{scope} request; use a new key for a new request",
                    },
                )
            return Response(
                stored.response, status=stored.status_code, headers={REPLAYED_HEADER: "true"}
            )
        response = apply()
        if 200 <= response.status_code < 300:
            IdempotentRequest.objects.create(
                scope=scope,
                key=key,
                fingerprint=fingerprint,
                status_code=response.status_code,
                response=response.data,
            )
        return response


class OrderStatusView(OpsView):
    """GET the status and the statuses reachable from it; PATCH/PUT {"status": X} moves it."""

    required_perms: ClassVar[dict[str, tuple[str, ...]]] = {
        "GET": ("order.view_order",),
        "PATCH": ("order.change_order",),
        "PUT": ("order.change_order",),
    }

    def get(self, request: Request, pk: int) -> Response:
        return Response(_order_status(get_object_or_404(Order, pk=pk)))

    def patch(self, request: Request, pk: int) -> Response:
        new_status = _required_text(request.data, "status", max_length=128)
        with transaction.atomic():
            order = get_object_or_404(Order.objects.select_for_update(), pk=pk)
            old_status = _set_status(order, new_status)
            if new_status == "Cancelled" and old_status != "Cancelled":
                # a cancelled order gives its allocated units back (Oscar's event handler)
                lines = list(order.lines.all())
                EventHandler(user=request.user).cancel_stock_allocations(
                    order, lines, [line.quantity for line in lines]
                )
        return Response({"old_status": old_status, **_order_status(order)})

    put = patch


def _order_summary(order: Any) -> dict[str, Any]:
    address = order.shipping_address
    return {
        "id": order.pk,
        "number": order.number,
        "status": order.status,
        "date_placed": _timestamp.to_representation(order.date_placed),
        "currency": order.currency,
        "total_incl_tax": str(order.total_incl_tax),
        "email": order.email,
        "user": order.user.username if order.user else None,
        "shipping_country": address.country_id if address else None,
        "lines": [
            {
                "id": line.pk,
                "partner_sku": line.partner_sku,
                "title": line.title,
                "quantity": line.quantity,
                "status": line.status,
                "stockrecord": line.stockrecord_id,
            }
            for line in order.lines.all()
        ],
    }


def _query_time(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    parsed = parse_datetime(raw)
    if parsed is None:
        raise Refusal(
            status.HTTP_400_BAD_REQUEST,
            {name: [f"{raw!r} is not an ISO 8601 date-time such as 2026-11-01T00:00:00Z."]},
        )
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


class OpsOrderList(generics.ListAPIView):
    """Orders filtered by status (repeatable) and by a date_placed window, paginated."""

    permission_classes = (StaffModelPermission,)
    required_perms: ClassVar[dict[str, tuple[str, ...]]] = {"GET": ("order.view_order",)}

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, Refusal):
            return Response(exc.body, status=exc.status_code)
        return super().handle_exception(exc)

    def get_queryset(self) -> Any:
        orders = Order.objects.select_related("user", "shipping_address").prefetch_related("lines")
        statuses = self.request.query_params.getlist("status")
        if statuses:
            known = list(settings.OSCAR_ORDER_STATUS_PIPELINE)
            unknown = [s for s in statuses if s not in known]
            if unknown:
                raise Refusal(
                    status.HTTP_400_BAD_REQUEST,
                    {"status": [f"unknown status {unknown}; known: {known}"]},
                )
            orders = orders.filter(status__in=statuses)
        since, until = _query_time(self.request, "since"), _query_time(self.request, "until")
        if since is not None:
            orders = orders.filter(date_placed__gte=since)
        if until is not None:
            orders = orders.filter(date_placed__lt=until)
        return orders.order_by("date_placed", "id")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([_order_summary(order) for order in page])


class StockAdjustView(OpsView):
    """Apply a signed delta to num_in_stock, once per idempotency key."""

    required_perms: ClassVar[dict[str, tuple[str, ...]]] = {
        "POST": ("partner.change_stockrecord",),
    }

    def post(self, request: Request, pk: int) -> Response:
        delta = request.data.get("delta") if isinstance(request.data, dict) else None
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise Refusal(status.HTTP_400_BAD_REQUEST, {"delta": ["An integer is required."]})
        key = _idempotency_key(request, required=True)
        reason = request.data.get("reason", "")

        def apply() -> Response:
            records = StockRecord.objects.select_for_update().select_related("product")
            record = get_object_or_404(records, pk=pk)
            if record.num_in_stock + delta < 0:
                raise Refusal(
                    status.HTTP_409_CONFLICT,
                    {
                        "detail": f"stock of {record.partner_sku} cannot go below zero: "
                        f"{record.num_in_stock} in stock, delta {delta}",
                        "num_in_stock": record.num_in_stock,
                        "delta": delta,
                    },
                )
            record.pre_save_signal()
            StockRecord.objects.filter(pk=pk).update(num_in_stock=F("num_in_stock") + delta)
            record.refresh_from_db()
            record.post_save_signal()  # Oscar's low-stock alerts listen to post_save
            return Response(
                {
                    "stockrecord": record.pk,
                    "partner_sku": record.partner_sku,
                    "delta": delta,
                    "num_in_stock": record.num_in_stock,
                    "num_allocated": record.num_allocated or 0,
                    "low_stock_threshold": record.low_stock_threshold,
                    "is_below_threshold": record.is_below_threshold,
                    "idempotency_key": key,
                }
            )

        request_input = {"stockrecord": pk, "delta": delta, "reason": reason}
        return _run_once("stock-adjust", key, request_input, apply)


def _note(note: Any) -> dict[str, Any]:
    return {
        "id": note.pk,
        "order": note.order_id,
        "message": note.message,
        "note_type": note.note_type,
        "user": note.user.username if note.user else None,
        "date_created": _timestamp.to_representation(note.date_created),
    }


class OrderNotesView(OpsView):
    """Oscar's OrderNote: list them, or add one (at most once per idempotency key if given)."""

    required_perms: ClassVar[dict[str, tuple[str, ...]]] = {
        "GET": ("order.view_order",),
        "POST": ("order.change_order",),
    }

    def get(self, request: Request, pk: int) -> Response:
        order = get_object_or_404(Order, pk=pk)
        notes = order.notes.select_related("user").order_by("date_created", "id")
        return Response([_note(note) for note in notes])

    def post(self, request: Request, pk: int) -> Response:
        message = _required_text(request.data, "message")
        note_type = request.data.get("note_type") or OrderNote.INFO
        if note_type not in (OrderNote.INFO, OrderNote.WARNING, OrderNote.ERROR, OrderNote.SYSTEM):
            raise Refusal(
                status.HTTP_400_BAD_REQUEST,
                {"note_type": ["One of Info, Warning, Error, System."]},
            )
        key = _idempotency_key(request, required=False)

        def apply() -> Response:
            order = get_object_or_404(Order, pk=pk)
            note = order.notes.create(message=message, note_type=note_type, user=request.user)
            return Response(_note(note), status=status.HTTP_201_CREATED)

        request_input = {"order": pk, "message": message, "note_type": note_type}
        return _run_once("order-note", key, request_input, apply)


class FulfilView(OpsView):
    """Ship every line: status "Shipped", a shipping event, allocations consumed; once per key."""

    required_perms: ClassVar[dict[str, tuple[str, ...]]] = {"POST": ("order.change_order",)}

    def post(self, request: Request, pk: int) -> Response:
        key = _idempotency_key(request, required=True)
        reference = request.data.get("reference", "") if isinstance(request.data, dict) else ""

        def apply() -> Response:
            order = get_object_or_404(Order.objects.select_for_update(), pk=pk)
            old_status = _set_status(order, "Shipped")
            lines = list(order.lines.all())
            quantities = [line.quantity for line in lines]
            handler = EventHandler(user=request.user)
            event_type, _ = ShippingEventType.objects.get_or_create(
                code="shipped", defaults={"name": "Shipped"}
            )
            try:
                handler.consume_stock_allocations(order, lines, quantities)
            except InvalidStockAdjustment as exc:
                raise Refusal(
                    status.HTTP_409_CONFLICT,
                    {"detail": f"cannot ship order {order.number}: {exc}"},
                ) from exc
            event = handler.create_shipping_event(
                order, event_type, lines, quantities, reference=reference
            )
            handler.create_note(order, f"Shipped ({reference or 'no reference'}), key {key}")
            return Response(
                {
                    "old_status": old_status,
                    **_order_status(order),
                    "shipping_event": event.pk,
                    "reference": reference,
                    "lines": [
                        {"line": line.pk, "partner_sku": line.partner_sku, "quantity": quantity}
                        for line, quantity in zip(lines, quantities, strict=True)
                    ],
                }
            )

        return _run_once("order-fulfil", key, {"order": pk, "reference": reference}, apply)
