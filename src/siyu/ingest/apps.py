from django.apps import AppConfig


class IngestConfig(AppConfig):
    name = "siyu.ingest"
    label = "ingest"
