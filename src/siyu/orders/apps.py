from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "siyu.orders"
    label = "orders"
