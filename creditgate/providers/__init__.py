"""AI providers behind one adapter interface.

- `base.py`: the interface (`ProviderAdapter`), its results (`ImageOutcome`, `TextResult`,
  `CredentialCheck`), its errors (`ProviderError` and subclasses), and the shared fan-out and
  retry rules.
- `registry.py`: `adapter_for(provider_id=...)`, key and base URL from IntegrationProvider, the
  sandbox for keyless providers while CREDITGATE_SANDBOX is on.
- `openai.py`, `runware.py`: one module per provider; their quirks stay there.
- `services.py`: `provider_check_credentials` for the admin's "Test key".
- `sandbox/`: the local emulator of both HTTP APIs (`manage.py sandbox`).

Timeouts and retries are Django settings with defaults (read with getattr, so none is required):
CREDITGATE_PROVIDER_CONNECT_TIMEOUT (5 s), _TEXT_TIMEOUT (120 s), _IMAGE_TIMEOUT (120 s),
_DOWNLOAD_TIMEOUT (60 s), _MAX_RETRIES (2), _RETRY_BASE_DELAY (0.5 s), _RETRY_MAX_DELAY
(30 s, also the cap on a provider's Retry-After), _MAX_PARALLEL_CALLS (8, the fan-out bound).
"""
