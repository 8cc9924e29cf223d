from django.urls import path

from creditgate.credits import apis

urlpatterns = [
    path("balance/", apis.BalanceApi.as_view(), name="credits-balance"),
    path("transactions/", apis.TransactionListApi.as_view(), name="credits-transactions"),
    # usage/ is reports.usage_api (routed in creditgate/urls.py): it reads jobs, which credits does not know.
]
