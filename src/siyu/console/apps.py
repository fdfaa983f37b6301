from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "siyu.console"
    label = "console"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from siyu.console.language import restore_on_login

        user_logged_in.connect(restore_on_login, dispatch_uid="siyu-console-language")
