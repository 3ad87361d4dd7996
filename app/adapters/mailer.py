"""Email over SMTP (smtplib): host, port, STARTTLS and credentials from the settings."""
from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr


class Mailer:
    def __init__(self, host: str, port: int, *, starttls: bool, username: str | None,
                 password: str | None, sender: str) -> None:
        self.host, self.port, self.starttls = host, port, starttls
        self.username, self.password, self.sender = username, password, sender

    @property
    def domain(self) -> str:
        """The sender's domain: Message-IDs are made under it."""
        address = parseaddr(self.sender)[1]
        return address.rpartition("@")[2] or "localhost"

    def send(self, to: str, subject: str, text: str, html: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        # Without these two, many mail systems score a message as spam.
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(domain=self.domain)
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)
