from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "siyu.analytics"
    label = "analytics"
