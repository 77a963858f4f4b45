from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "proxy.conversations"
    label = "conversations"
    verbose_name = "Stored responses"
