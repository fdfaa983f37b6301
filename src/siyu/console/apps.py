from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "siyu.console"
    label = "console"
