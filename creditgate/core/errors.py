"""The application's one error type.

Services raise `ApplicationError` (or a subclass); the API exception handler renders every
failure as {"error": {"code", "message", "details"}} with the error's status.
"""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    status_code = 400
    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, status_code: int | None = None,
                 details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.details = details or {}


class InvalidRequest(ApplicationError):
    status_code = 400
    code = "invalid_request"


class NotFound(ApplicationError):
    status_code = 404
    code = "not_found"


class PayloadTooLarge(ApplicationError):
    status_code = 413
    code = "payload_too_large"

    def __init__(self, *, limit_bytes: int):
        super().__init__(f"The request body is larger than the limit of {limit_bytes} bytes.",
                         details={"limit_bytes": limit_bytes})


class ServiceUnavailable(ApplicationError):
    """A transient fault of the database or the broker: nothing is wrong with the request, retry it."""

    status_code = 503
    code = "service_unavailable"

    def __init__(self, *, retry_after: int):
        super().__init__(f"The service is briefly unavailable; try again in {retry_after} seconds.",
                         details={"retry_after": retry_after})


def credits_words(n: int) -> str:
    """ "1 credit", "2 credits": a count of credits in a sentence."""
    return f"{n} credit" if n == 1 else f"{n} credits"


class InsufficientCredits(ApplicationError):
    status_code = 402
    code = "insufficient_credits"

    def __init__(self, *, required: int, available: int):
        super().__init__(
            f"This needs {credits_words(required)}; you have {available}.",
            details={"required": required, "available": available},
        )


class ShortfallOwed(ApplicationError):
    """No new hold while a refund's or a dispute's shortfall is owed (credits.services)."""

    status_code = 402
    code = "shortfall_owed"

    def __init__(self, *, shortfall: int, available: int):
        super().__init__(
            f"A refund or dispute took back {credits_words(shortfall)} that had already been spent. Buy credits to "
            f"settle them before starting new work (a purchase pays what is owed first).",
            details={"shortfall": shortfall, "available": available},
        )


class CapExceeded(ApplicationError):
    """A monthly cap (a member's, or an API key's) would be passed: spent this month + held by
    running jobs + this request > cap. Distinct from insufficient_credits: the account may have
    the credits; this spender may not use them this month."""

    status_code = 402
    code = "member_cap_exceeded"
    whose = "your monthly cap"

    def __init__(self, *, cap: int, spent: int, held: int, required: int, month: str):
        used = spent + held
        super().__init__(
            f"This needs {credits_words(required)}, which would pass {self.whose} of {credits_words(cap)}: "
            f"{used} {'is' if used == 1 else 'are'} used this month ({spent} spent, {held} held by running jobs).",
            details={"cap": cap, "spent": spent, "held": held, "required": required, "month": month})


class MemberCapExceeded(CapExceeded):
    code = "member_cap_exceeded"
    whose = "your monthly cap"


class ApiKeyCapExceeded(CapExceeded):
    code = "api_key_cap_exceeded"
    whose = "this API key's monthly cap"


class PermissionDenied(ApplicationError):
    status_code = 403
    code = "permission_denied"


class IdempotencyConflict(ApplicationError):
    status_code = 409
    code = "idempotency_conflict"

    def __init__(self, message: str = "This Idempotency-Key was already used with a different request."):
        super().__init__(message)


class RateLimited(ApplicationError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, *, retry_after: int):
        super().__init__(f"Too many requests; try again in {retry_after} seconds.",
                         details={"retry_after": retry_after})


class TooManyJobsInFlight(ApplicationError):
    """Fair shares: the account, or the API key the request came with, already has its limit of
    jobs in flight (queued or running). Distinct from rate_limited: this frees up as jobs finish,
    not as time passes."""

    status_code = 429
    code = "too_many_jobs_in_flight"

    def __init__(self, *, scope: str, limit: int, in_flight: int, retry_after: int):
        whose = "This API key" if scope == "api_key" else "Your account"
        jobs = f"{in_flight} job{'' if in_flight == 1 else 's'}"
        super().__init__(
            f"{whose} already has {jobs} in flight (queued or running), its limit of {limit}. "
            f"Try again in {retry_after} seconds, or once one of them has finished.",
            details={"scope": scope, "limit": limit, "in_flight": in_flight, "retry_after": retry_after})


class TierUnavailable(ApplicationError):
    status_code = 422
    code = "tier_unavailable"


class ProviderUnavailable(ApplicationError):
    status_code = 503
    code = "provider_unavailable"


class EmailNotSent(ApplicationError):
    """The email provider (Resend) did not take the email (not configured, refused, unreachable);
    the cause is chained. Here, not in providers, so that apps that only hear of it (the accounts'
    adapter) need not import providers."""

    status_code = 503
    code = "email_not_sent"
