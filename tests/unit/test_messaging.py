"""SMS and push providers: the sinks keep whole JSON files; an SMS is one line of 160 characters at most."""
import json

import pytest

from app.adapters.messaging import PushSink, SmsSink, push_sender, sms_sender
from app.adapters.templates import Templates
from app.services.reminders import SMS_MAX_CHARS, sms_text


def test_the_sinks_keep_each_message_as_a_json_file(tmp_path):
    sms, push = SmsSink(tmp_path / "sms"), PushSink(tmp_path / "push")
    sms.send_sms(to="+33612345678", text="Heat, tonight", idempotency_key="reminder-1-sms")
    sms.send_sms(to="+33612345678", text="Café à 20 h", idempotency_key="reminder-2-sms")
    push.send_push(user_id=7, title="Heat starts soon", body="20:30", idempotency_key="reminder-1/push")
    files = sorted((tmp_path / "sms").iterdir())
    assert [f.suffix for f in files] == [".json", ".json"]  # nothing half-written left
    assert json.loads(files[1].read_text()) == {"idempotency_key": "reminder-2-sms", "to": "+33612345678",
                                                "text": "Café à 20 h"}
    assert [m["text"] for m in sms.messages()] == ["Heat, tonight", "Café à 20 h"]
    (note,) = push.messages()
    assert note == {"idempotency_key": "reminder-1/push", "user_id": 7, "title": "Heat starts soon", "body": "20:30"}
    assert "/" not in next((tmp_path / "push").iterdir()).name.removesuffix(".json").split("-", 2)[2]


def test_providers_are_chosen_by_name(tmp_path):
    assert isinstance(sms_sender("sink", str(tmp_path)), SmsSink)
    assert isinstance(push_sender("sink", str(tmp_path)), PushSink)
    with pytest.raises(ValueError, match="SMS_PROVIDER"):
        sms_sender("twilio-typo", str(tmp_path))
    with pytest.raises(ValueError, match="PUSH_PROVIDER"):
        push_sender("", str(tmp_path))


class _Obj:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def test_the_sms_template_fits_one_message_whatever_the_names():
    long = "A Very Long Title " * 20
    text = Templates().render("sms/reminder.txt", movie=_Obj(title=long), theater=_Obj(name="Théâtre " * 20),
                              starts_short="Sun 22 Nov 21:30", seats="A1, A2, A3, A4, B1, B2, B3, B4",
                              reservation=_Obj(id=123456789))
    assert len(sms_text(text)) <= SMS_MAX_CHARS
    assert sms_text(text).startswith("Marquee: A Very Long Title") and "\n" not in sms_text(text)


def test_sms_text_is_one_line_cut_at_160():
    assert sms_text("Heat\n at Opera ") == "Heat at Opera"
    cut = sms_text("x" * 400)
    assert len(cut) == SMS_MAX_CHARS and cut.endswith("...")
    assert sms_text("y" * SMS_MAX_CHARS) == "y" * SMS_MAX_CHARS
