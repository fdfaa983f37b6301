from django.apps import AppConfig


class ValuationConfig(AppConfig):
    name = "siyu.valuation"
    label = "valuation"
