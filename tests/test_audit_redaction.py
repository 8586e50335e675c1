"""What a trail never holds: keyed digests no one can guess, and no secret in any output."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from paysession import PaymentSession, SessionMachine, TransitionRecord
from paysession._wire import canonical_json, digest
from paysession.audit import AuditError, JsonlSink, MemorySink, replay
from paysession.cli import main

from .helpers import KEY, SECRET, StepClock, forge, numbered_session


class TestRedaction:
    def test_keyed_digests_cannot_be_guessed(self) -> None:
        """With a key, a CVC's digest is an HMAC: trying all 1,000 codes finds nothing."""
        machine = SessionMachine(
            PaymentSession.new(cart_id="c", provider_id="stripe", amount=5), key=KEY
        )
        machine.initiate({"cvc": "737"})
        kept = machine.history[-1].changes["data"][1]
        assert isinstance(kept, str) and kept.startswith("hmac-sha256:")
        guesses = {digest({"cvc": f"{n:03d}"}) for n in range(1000)}
        assert kept not in guesses
        assert digest({"cvc": "737"}, KEY) == kept
        assert replay(machine.history, data={"cvc": "737"}, key=KEY) == machine.session
        with pytest.raises(AuditError) as caught:
            replay(machine.history, data={"cvc": "738"}, key=KEY)
        assert caught.value.reason == "data_mismatch"

    def test_secret_never_leaves_data(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A secret in data or cart is in no record, line, log, CLI output or error."""
        caplog.set_level(logging.DEBUG)
        path = tmp_path / "trail.jsonl"
        clock = StepClock()
        cart = {"email": "a@example.com", "token": SECRET}
        data = {"client_secret": SECRET, "nested": [{"card": SECRET}]}
        sink = MemorySink()
        with JsonlSink(path, checkpoint_every=None) as jsonl:

            class Both:
                def append(self, record: TransitionRecord) -> None:
                    sink.append(record)
                    jsonl.append(record)

            machine = SessionMachine(
                numbered_session(1, clock, cart=cart), clock=clock, sink=Both()
            )
            machine.initiate(data)
            machine.update(amount=100, data={**data, "v": 2})
            machine.authorize()
        texts = [
            repr(machine.history),
            str(machine.history),
            repr(sink.records),
            canonical_json([r.to_dict() for r in sink.records]),
            path.read_bytes().decode("ascii"),
        ]
        errors: list[Exception] = []
        wrong = {"client_secret": SECRET + "x"}
        for attempt in (
            lambda: replay(machine.history),
            lambda: replay(machine.history, data=wrong, cart=cart),
            lambda: replay(machine.history, data=machine.session.data, cart=wrong),
            lambda: replay(forge(machine.history, 2, trigger="select"), data=wrong, cart=cart),
        ):
            with pytest.raises(AuditError) as caught:
                attempt()
            errors.append(caught.value)
        texts += [str(e) for e in errors] + [repr(e) for e in errors]
        data_file = tmp_path / "data.json"
        data_file.write_text(canonical_json(wrong))
        tampered = tmp_path / "tampered.jsonl"
        lines = path.read_bytes().splitlines(keepends=True)
        tampered.write_bytes(lines[0] + lines[2] + lines[3][:40])
        for argv in (
            ["audit", "verify", str(path)],
            ["audit", "verify", str(tampered)],
            ["audit", "show", str(path)],
            ["audit", "show", str(tampered)],
            ["audit", "replay", str(path), "--session", "ps_0001"],
            ["audit", "replay", str(path), "--session", "ps_0001", "--data-json", str(data_file)],
            ["audit", "replay", str(tampered), "--session", "ps_0001"],
        ):
            main(argv)
            out, err = capsys.readouterr()
            texts += [out, err]
        texts += [record.getMessage() for record in caplog.records]
        assert digest(machine.session.data) in texts[0]
        for text in texts:
            assert SECRET not in text
