"""Email over SMTP (smtplib): host, port, STARTTLS and credentials from the settings."""
from __future__ import annotations

import smtplib
from email.message import EmailMessage


class Mailer:
    def __init__(self, host: str, port: int, *, starttls: bool, username: str | None,
                 password: str | None, sender: str) -> None:
        self.host, self.port, self.starttls = host, port, starttls
        self.username, self.password, self.sender = username, password, sender

    def send(self, to: str, subject: str, text: str, html: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)
