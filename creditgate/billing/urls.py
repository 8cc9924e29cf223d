from django.urls import path

from creditgate.billing import apis

urlpatterns = [
    path("credits/packs/", apis.PackListApi.as_view(), name="credits-packs"),
    path("credits/checkout/", apis.CheckoutApi.as_view(), name="credits-checkout"),
    path("credits/checkout/<uuid:checkout_id>/", apis.CheckoutDetailApi.as_view(), name="credits-checkout-detail"),
    path("credits/low-balance-alert/", apis.LowBalanceAlertApi.as_view(), name="credits-low-balance-alert"),
    path("credits/shortfall/", apis.ShortfallApi.as_view(), name="credits-shortfall"),
    path("webhooks/stripe/", apis.StripeWebhookApi.as_view(), name="webhooks-stripe"),
]
