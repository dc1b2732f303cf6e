"""Settings of the example project: the least Django needs, plus where reactor announces."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "only-for-this-example")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["shop.apps.ShopConfig"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "mysite.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# Where each web process announces its distributor, and where nodes (--discover) find them.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Only the web server's processes run a distributor: wsgi.py switches it on, so manage.py commands
# and reactor nodes (whose job files load this project to use its models) do not start one.
SHOP_RUN_DISTRIBUTOR = os.environ.get("SHOP_RUN_DISTRIBUTOR") == "1"
