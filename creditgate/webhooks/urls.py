from django.urls import path

from creditgate.webhooks import apis

urlpatterns = [
    path("endpoints/", apis.EndpointListApi.as_view(), name="webhook-endpoints"),
    path("endpoints/<uuid:endpoint_id>/", apis.EndpointDetailApi.as_view(), name="webhook-endpoint"),
    path("endpoints/<uuid:endpoint_id>/test/", apis.EndpointTestApi.as_view(), name="webhook-endpoint-test"),
    path("deliveries/", apis.DeliveryListApi.as_view(), name="webhook-deliveries"),
    path("deliveries/<int:delivery_id>/", apis.DeliveryDetailApi.as_view(), name="webhook-delivery"),
]
