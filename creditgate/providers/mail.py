"""Django's email API through Resend (providers.email.email_send), so django-allauth's emails and
team invitations take the same road as the low-balance emails: Resend's key from the admin's
Providers page, or the sandbox while CREDITGATE_SANDBOX is on (its /_sandbox/stats records them).

A small backend of our own rather than anymail's directly: anymail's Resend backend wants its
key in settings, ours lives encrypted in the database and may change at any time.
"""

from __future__ import annotations

from django.core.mail.backends.base import BaseEmailBackend

from creditgate.providers import email as emails


class ResendEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages) -> int:
        sent = 0
        for message in email_messages:
            try:
                for to in message.recipients():
                    emails.email_send(to=to, subject=message.subject, body=message.body)
            except emails.EmailNotSent:
                if not self.fail_silently:
                    raise
                continue
            sent += 1
        return sent
