"""Hypothesis strategies for sessions and their data."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st

from paysession import PaymentSession, PaymentSessionStatus

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)

aware_datetimes = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from(
        [timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    ),
)
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=30)


@st.composite
def sessions(draw: st.DrawFn) -> PaymentSession:
    """Any valid session."""
    created = draw(aware_datetimes)
    updated = created + draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)))
    status = draw(st.sampled_from(list(PaymentSessionStatus)))
    authorized_at = draw(st.none() | st.just(updated))
    authorized = status is PaymentSessionStatus.AUTHORIZED
    if authorized and authorized_at is None:
        authorized_at = updated
    # An authorized session was initiated and has an amount: the authorize guards.
    least = 1 if authorized else 0
    return PaymentSession(
        id="ps_" + draw(ids),
        cart_id=draw(st.none() | ids),
        provider_id=draw(ids),
        is_selected=draw(st.booleans()),
        is_initiated=authorized or draw(st.booleans()),
        status=status,
        data=draw(json_objects),
        idempotency_key=draw(st.none() | ids),
        amount=draw(
            st.integers(min_value=least, max_value=2**63 - 1)
            | (st.nothing() if authorized else st.none())
        ),
        payment_authorized_at=authorized_at,
        created_at=created,
        updated_at=updated,
        cart=draw(st.none() | json_objects),
    )
