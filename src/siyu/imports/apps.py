from django.apps import AppConfig


class ImportsConfig(AppConfig):
    name = "siyu.imports"
    label = "imports"
