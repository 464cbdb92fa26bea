from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.mail import send_mail
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from django_smtprelay.models import Message

from .forms import TestMessageForm


@login_required
def send_test_message(request: HttpRequest) -> HttpResponse:
    """Queue a test message, then list the latest messages with links into the admin."""
    form = TestMessageForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        send_mail(
            form.cleaned_data["subject"],
            form.cleaned_data["body"],
            None,
            [form.cleaned_data["to"]],
        )
        messages.success(request, f"Queued a message to {form.cleaned_data['to']}.")
        return redirect("home")
    latest = Message.objects.prefetch_related("recipients")[:10]
    return render(
        request,
        "outbox/index.html",
        {
            "form": form,
            "latest": latest,
            "admin_messages_url": reverse("admin:django_smtprelay_message_changelist"),
        },
    )
