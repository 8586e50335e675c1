"""Adyen notifications, from the raw bytes to the move: each item's HMAC checked with the
Adyen library's own check (the corpus items signed by Adyen's library tests verify with
their published key; the others are signed here with Adyen's scheme)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import attrs
import pytest
from Adyen import util as adyen_util

from paysession import (
    InvalidSessionData,
    PaymentSessions,
    PaymentSessionStatus,
    ReconciliationAnomaly,
    WebhookRejected,
)
from paysession.providers.adyen import parse_notification
from paysession.store import SessionStore
from paysession.store.base import EventOutcome

from .helpers import StepClock
from .test_provider_truth import BECOMES

S = PaymentSessionStatus
DATA = Path(__file__).parent / "data" / "providers"
PUBLISHED_KEY = "74F490DD33F7327BAECC88B2947C011FC02D014A473AAA33A8EC93E4DC069174"
KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
FILES = sorted(path.name for path in (DATA / "adyen").glob("notification*.json"))
"""The notifications of the corpus (the Checkout API's answers beside them are AdyenProvider's)."""


def item_of(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((DATA / "adyen" / name).read_text())
    if "notificationItems" in payload:
        item: dict[str, Any] = payload["notificationItems"][0]["NotificationRequestItem"]
        return item
    return payload


def signed(item: dict[str, Any], key: str = KEY) -> dict[str, Any]:
    """``item`` signed with ``key`` by Adyen's own signer."""
    item = copy.deepcopy(item)
    item.setdefault("additionalData", {}).pop("hmacSignature", None)
    bare = {name: value for name, value in item.items() if name != "additionalData"}
    item["additionalData"]["hmacSignature"] = adyen_util.generate_notification_sig(
        bare, key
    ).decode()
    return item


def body(*items: dict[str, Any]) -> bytes:
    """A NotificationRequest as Adyen posts it."""
    return json.dumps(
        {"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in items]}
    ).encode()


def session_for(store: SessionStore, item: dict[str, Any], amount: int | None = None) -> Any:
    sessions = PaymentSessions(store, clock=StepClock())
    session = sessions.create(
        cart_id=None,
        provider_id="adyen",
        amount=item["amount"]["value"] if amount is None else amount,
    )
    sessions.fire(session.id, "initiate", data={"pspReference": item["pspReference"]})
    return sessions, session.id


@pytest.mark.parametrize("name", [n for n in FILES if "adyen-python" in n])
def test_items_signed_by_adyen_verify_with_their_key(name: str) -> None:
    item = item_of(name)
    (report,) = parse_notification(body(item), PUBLISHED_KEY)
    assert (report.status, report.session_id, report.provider_ref) == (
        "AUTHORISATION:true",
        item["merchantReference"],
        item["pspReference"],
    )
    assert (report.amount, report.currency) == (item["amount"]["value"], "EUR")
    with pytest.raises(WebhookRejected, match="HMAC"):
        parse_notification(body(item), KEY)


@pytest.mark.parametrize("name", FILES)
def test_each_corpus_item_becomes_its_documented_move(name: str, store: SessionStore) -> None:
    item = item_of(name)
    sessions, session_id = session_for(store, item)
    item["merchantReference"] = session_id
    reports = parse_notification(body(signed(item)), KEY)
    expected = BECOMES[f"adyen/{name}"]
    if expected is None:
        assert reports == []  # says nothing of where the payment is
        return
    (report,) = reports
    done = sessions.reconcile_report(report)
    assert sessions.get(session_id).status is expected
    assert done.outcome is EventOutcome.APPLIED


def test_a_batch_is_checked_whole_and_read_item_by_item(store: SessionStore) -> None:
    authorised = item_of("notification_authorisation_true.adyen-java.json")
    sessions, session_id = session_for(store, authorised)
    authorised["merchantReference"] = session_id
    refund = item_of("notification_refund_true.adyen-java.json")
    forged = copy.deepcopy(signed(authorised))
    forged["amount"]["value"] = 1
    with pytest.raises(WebhookRejected, match="item 1"):
        parse_notification(body(signed(refund), forged), KEY)
    (report,) = parse_notification(body(signed(refund), signed(authorised)), KEY)
    sessions.reconcile_report(report)
    assert sessions.get(session_id).status is S.AUTHORIZED
    again = sessions.reconcile_report(report)  # Adyen delivers at least once
    assert (again.outcome, again.records) == (EventOutcome.DUPLICATE, ())


def test_the_session_is_found_by_the_payments_reference(store: SessionStore) -> None:
    """A capture names the payment by originalReference: the session keeps pspReference."""
    capture = item_of("notification_capture_true.adyen-java.json")
    sessions = PaymentSessions(store, clock=StepClock())
    session = sessions.create(cart_id=None, provider_id="adyen", amount=23623)
    sessions.fire(session.id, "initiate", data={"pspReference": capture["originalReference"]})
    (report,) = parse_notification(body(signed(capture)), KEY)
    done = sessions.reconcile_report(attrs.evolve(report, session_id=None))
    assert done.outcome is EventOutcome.APPLIED
    assert sessions.get(session.id).status is S.AUTHORIZED


def test_an_authorisation_for_another_amount_does_not_authorize(store: SessionStore) -> None:
    item = item_of("notification_authorisation_true.adyen-java.json")
    sessions, session_id = session_for(store, item, amount=item["amount"]["value"] + 1)
    item["merchantReference"] = session_id
    (report,) = parse_notification(body(signed(item)), KEY)
    with pytest.raises(ReconciliationAnomaly) as caught:
        sessions.reconcile_report(report)
    assert caught.value.kind == "amount_mismatch"
    assert sessions.get(session_id).status is S.PENDING


def test_a_refusal_is_a_decline(store: SessionStore) -> None:
    item = item_of("notification_authorisation_true.adyen-java.json")
    sessions, session_id = session_for(store, item)
    item.update(merchantReference=session_id, success="false", reason="Refused")
    (report,) = parse_notification(body(signed(item)), KEY)
    assert (report.status, report.decline) == ("AUTHORISATION:false", "Refused")
    sessions.reconcile_report(report)
    assert sessions.get(session_id).status is S.ERROR


def _unsigned(item: dict[str, Any]) -> bytes:
    item = copy.deepcopy(item)
    item["additionalData"].pop("hmacSignature")
    return body(item)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda item: body(signed(item, PUBLISHED_KEY)), "HMAC"),  # another key
        (lambda item: body({**signed(item), "success": "false"}), "HMAC"),  # changed
        (lambda item: body({**signed(item), "merchantReference": "ps_other"}), "HMAC"),
        (_unsigned, "HMAC"),
        (
            lambda item: body(
                {**signed(item), "additionalData": json.loads("[" * 900 + "]" * 900)}
            ),
            "HMAC",
        ),
        (lambda item: b"<notification/>", "not JSON"),
        (lambda item: b'{"eventCode": "AUTHORISATION"}', "not an Adyen notification"),
        (lambda item: b'{"notificationItems": [{"Other": {}}]}', "NotificationRequestItem"),
    ],
)
def test_untrusted_bodies_are_rejected_and_record_nothing(
    store: SessionStore, make: Any, why: str
) -> None:
    item = item_of("notification_authorisation_true.adyen-java.json")
    sessions, session_id = session_for(store, item)
    item["merchantReference"] = session_id
    before = (sessions.history(session_id), sessions.provider_events(session_id=session_id))
    with pytest.raises(WebhookRejected) as caught:
        for report in parse_notification(make(signed(item)), KEY):
            sessions.reconcile_report(report)
    assert caught.value.provider_id == "adyen" and why in str(caught.value)
    assert KEY not in str(caught.value)
    after = (sessions.history(session_id), sessions.provider_events(session_id=session_id))
    assert after == before


def test_the_key_must_be_hex() -> None:
    with pytest.raises(InvalidSessionData) as caught:
        parse_notification(b"{}", "not a key")
    assert caught.value.fields == ("hmac_key",)
