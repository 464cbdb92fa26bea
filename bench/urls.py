"""URLs of the benchmark's site: the app's webhooks, and anymail's own view as the baseline."""

from anymail.webhooks.postmark import PostmarkTrackingWebhookView
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
