"""The WSGI entry point the server loads (gunicorn mysite.wsgi), in every worker process."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
os.environ.setdefault("SHOP_RUN_DISTRIBUTOR", "1")  # this process serves the web: see settings
application = get_wsgi_application()
