"""The shop app; its ready() starts the web process's distributor."""

from django.apps import AppConfig
from django.conf import settings

import reactor as JR


class ShopConfig(AppConfig):
    name = "shop"

    def ready(self) -> None:
        """Start this process's distributor once Django is set up.

        On port 0 (each worker process gets its own free port) and announced in Redis, so nodes
        started with --discover find every worker. It drains at exit (drain_timeout); with
        gunicorn --preload it starts in the master and again in each worker on first use.
        """
        if settings.SHOP_RUN_DISTRIBUTOR:
            JR.start_distributor("127.0.0.1", 0, announce=settings.REDIS_URL, group="django_app")
