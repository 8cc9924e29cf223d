from django.urls import path

from creditgate.credits import apis, usage_api

urlpatterns = [
    path("balance/", apis.BalanceApi.as_view(), name="credits-balance"),
    path("transactions/", apis.TransactionListApi.as_view(), name="credits-transactions"),
    path("usage/", usage_api.UsageApi.as_view(), name="credits-usage"),
]
