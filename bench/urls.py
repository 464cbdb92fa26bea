"""URLs of the benchmark's site: the app's webhooks, anymail's own view as the
webhook step's baseline, and the admin for the admin-at-scale step (``BENCH_ADMIN=1``)."""

from anymail.webhooks.postmark import PostmarkTrackingWebhookView
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from bench.webhooks import SECRET


@csrf_exempt
def anymail_only(request: HttpRequest) -> HttpResponse:
    """anymail's Postmark view, made per request with its secret, as the route's URL makes it."""
    view = PostmarkTrackingWebhookView(webhook_secret=[SECRET])
    view.setup(request)
    return view.dispatch(request)


urlpatterns = [
    path("smtprelay/", include("django_smtprelay.urls")),
    path("anymail-only/postmark/tracking/", anymail_only),
]

if settings.ADMIN:
    from django.contrib import admin

    urlpatterns.append(path("admin/", admin.site.urls))
